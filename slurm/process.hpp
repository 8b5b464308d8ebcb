// Running SLURM's client commands (sbatch, squeue, scontrol) without a shell: argv goes
// straight to execvp, so no value ever meets shell parsing on the way. shell_quote() is for
// the one place where text must reach a shell: the generated array script.
#pragma once
#include <string>
#include <string_view>
#include <vector>

namespace crackseg::sweep {

struct ProcessResult {
  int exit_code = -1;  // 128+signal when killed by a signal; 127 when the program is missing
  std::string out;
  std::string err;
};

// Runs argv[0] (PATH lookup) with argv, stdin from /dev/null, and collects stdout and stderr.
// The command inherits no other descriptor of the caller (all of fd 3 and up are closed in
// the child), so nothing it leaves running can hold the caller's pipes open.
[[nodiscard]] ProcessResult run_process(const std::vector<std::string>& argv);

// Like run_process but throws Error naming the command, its exit code and its stderr when it
// fails; returns stdout.
[[nodiscard]] std::string run_checked(const std::vector<std::string>& argv);

// 'text' with every ' written as '\'' : the result is one literal word in POSIX sh.
[[nodiscard]] std::string shell_quote(std::string_view text);
// argv as one copy-pasteable command line (for --dry-run and messages).
[[nodiscard]] std::string shell_join(const std::vector<std::string>& argv);

}  // namespace crackseg::sweep
