#include "slurm/queue.hpp"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <ctime>
#include <deque>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

#include "slurm/plan.hpp"
#include "slurm/process.hpp"
#include "src/core/error.hpp"

namespace crackseg::sweep {
namespace fs = std::filesystem;

std::string compress_ranges(std::vector<int64_t> idx) {
  std::sort(idx.begin(), idx.end());
  idx.erase(std::unique(idx.begin(), idx.end()), idx.end());
  std::string s;
  for (size_t i = 0; i < idx.size();) {
    size_t j = i;
    while (j + 1 < idx.size() && idx[j + 1] == idx[j] + 1) ++j;
    if (!s.empty()) s += ',';
    s += std::to_string(idx[i]);
    if (j > i) s += "-" + std::to_string(idx[j]);
    i = j + 1;
  }
  return s;
}

std::vector<ArrayChunk> split_array(std::vector<int64_t> ids, int64_t max_array_size, int max_concurrent) {
  if (max_array_size < 1) throw Error("MaxArraySize must be >= 1, got " + std::to_string(max_array_size));
  std::sort(ids.begin(), ids.end());
  ids.erase(std::unique(ids.begin(), ids.end()), ids.end());
  std::map<int64_t, ArrayChunk> chunks;
  for (int64_t id : ids) {
    auto& c = chunks[id / max_array_size];
    c.offset = (id / max_array_size) * max_array_size;
    c.ids.push_back(id);
  }
  std::vector<ArrayChunk> out;
  for (auto& [k, c] : chunks) {
    std::vector<int64_t> idx;
    for (int64_t id : c.ids) idx.push_back(id - c.offset);
    c.array = compress_ranges(idx);
    if (max_concurrent > 0) c.array += "%" + std::to_string(max_concurrent);
    out.push_back(std::move(c));
  }
  return out;
}

int64_t cluster_max_array_size() {
  const std::string out = run_checked({"scontrol", "show", "config"});
  std::istringstream in(out);
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("MaxArraySize", 0) != 0) continue;
    const auto eq = line.find('=');
    if (eq == std::string::npos) break;
    return std::stoll(line.substr(eq + 1));
  }
  throw Error("`scontrol show config` printed no MaxArraySize");
}

namespace {

std::string utc_now() {
  const std::time_t t = std::time(nullptr);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", std::gmtime(&t));
  return buf;
}

void write_jobs(const fs::path& dir, const std::vector<Submission>& subs) {
  nlohmann::json j = nlohmann::json::array();
  for (const auto& s : subs)
    j.push_back({{"job_id", s.job_id}, {"offset", s.offset}, {"array", s.array}, {"ids", s.ids}, {"submitted", s.submitted}});
  const auto tmp = jobs_path(dir).string() + ".tmp";
  std::ofstream(tmp, std::ios::trunc) << j.dump(1) << "\n";
  fs::rename(tmp, jobs_path(dir));
}

// "KEY=value" fields of one `scontrol -o show job` line (values end at the next space).
std::map<std::string, std::string> fields(const std::string& line) {
  std::map<std::string, std::string> f;
  std::istringstream in(line);
  std::string w;
  while (in >> w)
    if (auto eq = w.find('='); eq != std::string::npos) f.emplace(w.substr(0, eq), w.substr(eq + 1));
  return f;
}

std::string tail_lines(const fs::path& p, int n) {
  std::ifstream in(p);
  if (!in) return {};
  std::deque<std::string> q;
  std::string line;
  while (std::getline(in, line)) {
    q.push_back(line);
    if (static_cast<int>(q.size()) > n) q.pop_front();
  }
  std::string s;
  for (const auto& l : q) s += l + "\n";
  return s;
}

// Job states in which SLURM will still run (or is running) the task.
bool slurm_running(const std::string& s) {
  return s == "RUNNING" || s == "COMPLETING" || s == "CONFIGURING" || s == "STAGE_OUT" || s == "SIGNALING";
}
bool slurm_active(const std::string& s) {
  return slurm_running(s) || s == "PENDING" || s == "REQUEUED" || s == "REQUEUE_HOLD" || s == "REQUEUE_FED" ||
         s == "SUSPENDED" || s == "STOPPED" || s == "RESIZING" || s == "RESV_DEL_HOLD" || s == "SPECIAL_EXIT";
}

std::string user_name() {
  const char* u = std::getenv("USER");
  if (u && *u) return u;
  return std::to_string(getuid());
}

}  // namespace

std::vector<Submission> read_jobs(const fs::path& dir) {
  std::vector<Submission> subs;
  std::ifstream in(jobs_path(dir));
  if (!in) return subs;
  try {
    for (const auto& e : nlohmann::json::parse(in)) {
      Submission s;
      s.job_id = e.at("job_id");
      s.offset = e.at("offset");
      s.array = e.at("array");
      s.ids = e.at("ids").get<std::vector<int64_t>>();
      s.submitted = e.at("submitted");
      subs.push_back(std::move(s));
    }
  } catch (const nlohmann::json::exception& e) {
    throw InputError(jobs_path(dir).string() + ": " + e.what());
  }
  return subs;
}

std::vector<Submission> submit_tasks(const fs::path& dir, const SweepSpec& spec, const std::vector<int64_t>& ids,
                                     bool dry_run, std::ostream& log) {
  if (ids.empty()) {
    log << "nothing to submit\n";
    return {};
  }
  int64_t max_size = 1001;  // SLURM's default, for --dry-run without a reachable cluster
  try {
    max_size = cluster_max_array_size();
  } catch (const Error& e) {
    if (!dry_run) throw;
    const std::string why = e.what();
    log << "# no cluster reachable (" << why.substr(0, why.find('\n')) << "); assuming MaxArraySize=1001\n";
  }
  const auto chunks = split_array(ids, max_size, spec.resources.max_concurrent);
  std::vector<Submission> subs = read_jobs(dir), added;
  for (const auto& c : chunks) {
    // No shell: argv goes to execvp. --export keeps the environment and adds the offset.
    std::vector<std::string> argv = {"sbatch", "--parsable", "--array=" + c.array,
                                     "--export=ALL,CRACKSEG_SWEEP_OFFSET=" + std::to_string(c.offset),
                                     script_path(dir).string()};
    Submission s{"", c.offset, c.array, c.ids, utc_now()};
    if (dry_run) {
      log << shell_join(argv) << "   # tasks " << compress_ranges(c.ids) << "\n";
    } else {
      std::string out = run_checked(argv);
      s.job_id = out.substr(0, out.find_first_of(";\n"));
      log << "submitted array job " << s.job_id << ": tasks " << compress_ranges(c.ids) << " (--array=" << c.array
          << ", offset " << c.offset << ")\n";
      subs.push_back(s);
      write_jobs(dir, subs);  // after each chunk: a failure later still leaves a true record
    }
    added.push_back(std::move(s));
  }
  return added;
}

const char* state_name(TaskState s) {
  switch (s) {
    case TaskState::done: return "done";
    case TaskState::running: return "running";
    case TaskState::pending: return "pending";
    case TaskState::failed: return "failed";
    case TaskState::missing: return "missing";
  }
  return "?";
}

std::vector<TaskStatus> sweep_status(const fs::path& dir, int log_lines) {
  const auto tasks = read_manifest(manifest_path(dir));
  const auto subs = read_jobs(dir);
  // Latest submission of each task.
  std::map<int64_t, const Submission*> latest;
  for (const auto& s : subs)
    for (int64_t id : s.ids) latest[id] = &s;
  std::map<std::string, const Submission*> by_job;
  for (const auto& s : subs) by_job[s.job_id] = &s;

  // The queue: one line per array task (-r), ours only.
  std::map<int64_t, std::pair<std::string, std::string>> queued;  // id -> (state, job)
  if (!subs.empty()) {
    // -t all: a requeued task passes through states (REQUEUED, ...) the default filter hides.
    auto q = run_process({"squeue", "-h", "-r", "-t", "all", "-u", user_name(), "-o", "%F|%K|%T"});
    if (q.exit_code != 0) throw Error("squeue failed (" + std::to_string(q.exit_code) + "): " + q.err);
    std::istringstream in(q.out);
    std::string line;
    while (std::getline(in, line)) {
      const auto a = line.find('|'), b = line.rfind('|');
      if (a == std::string::npos || a == b) continue;
      const std::string job = line.substr(0, a), idx = line.substr(a + 1, b - a - 1);
      auto it = by_job.find(job);
      if (it == by_job.end() || idx.empty() || idx.find_first_not_of("0123456789") != std::string::npos) continue;
      const int64_t id = std::stoll(idx) + it->second->offset;
      const std::string state = line.substr(b + 1);
      if (latest.count(id) && latest[id] == it->second && slurm_active(state)) queued[id] = {state, job + "_" + idx};
    }
  }
  // Finished-job records (kept MinJobAge seconds): state and exit code per array task.
  std::map<int64_t, std::map<std::string, std::string>> records;
  for (const auto& s : subs) {
    if (s.job_id.empty()) continue;
    auto r = run_process({"scontrol", "-o", "show", "job", s.job_id});
    if (r.exit_code != 0) continue;  // purged: the exit file below still tells
    std::istringstream in(r.out);
    std::string line;
    while (std::getline(in, line)) {
      auto f = fields(line);
      const auto& t = f["ArrayTaskId"];
      if (f["ArrayJobId"] != s.job_id || t.empty() || t.find_first_not_of("0123456789") != std::string::npos) continue;
      const int64_t id = std::stoll(t) + s.offset;
      if (latest.count(id) && latest[id] == &s) records[id] = std::move(f);
    }
  }

  std::vector<TaskStatus> out;
  for (const auto& t : tasks) {
    TaskStatus st;
    st.task = t;
    const fs::path tdir = dir / t.dir;
    if (latest.count(t.id))
      st.job = latest[t.id]->job_id + "_" + std::to_string(t.id - latest[t.id]->offset);
    if (fs::exists(tdir / "result.json")) {
      st.state = TaskState::done;
    } else if (auto q = queued.find(t.id); q != queued.end()) {
      st.slurm_state = q->second.first;
      st.job = q->second.second;
      st.state = slurm_running(st.slurm_state) ? TaskState::running : TaskState::pending;
    } else {
      std::ifstream ex(tdir / "sweep_exit");  // written by the array script after the step
      int code = 0;
      if (ex >> code) {
        st.state = TaskState::failed;
        st.exit_code = code;
        st.slurm_state = code == 0 ? "NO_RESULT" : "FAILED";
      }
      if (auto r = records.find(t.id); r != records.end()) {
        const auto& f = r->second;
        const std::string js = f.count("JobState") ? f.at("JobState") : "";
        if (slurm_active(js) && st.state == TaskState::missing) {  // squeue raced a state change
          st.state = slurm_running(js) ? TaskState::running : TaskState::pending;
          st.slurm_state = js;
        } else if (js != "COMPLETED" || st.state == TaskState::failed || st.state == TaskState::missing) {
          st.state = TaskState::failed;
          st.slurm_state = js;
          if (!st.exit_code && f.count("ExitCode")) st.exit_code = slurm_exit_code(f.at("ExitCode"));
        }
      }
      if (st.state == TaskState::failed) {
        st.log_tail = tail_lines(tdir / "task.log", log_lines);
        if (st.log_tail.empty() && !st.job.empty())
          st.log_tail = tail_lines(dir / "logs" / (st.job + ".out"), log_lines);
      }
    }
    out.push_back(std::move(st));
  }
  return out;
}

int slurm_exit_code(const std::string& exit_code) {
  const auto colon = exit_code.find(':');
  try {
    const int code = std::stoi(exit_code.substr(0, colon));
    const int sig = colon == std::string::npos ? 0 : std::stoi(exit_code.substr(colon + 1));
    return sig != 0 ? 128 + sig : code;
  } catch (const std::exception&) {
    return -1;  // not "N:M": shown as -1 rather than a plausible-looking 0
  }
}

void print_status(const std::vector<TaskStatus>& st, std::ostream& os) {
  std::map<TaskState, int> count;
  char buf[256];
  std::snprintf(buf, sizeof buf, "%-6s %-8s %-5s %-12s %-14s %s\n", "id", "state", "exit", "slurm", "job", "seed  overrides");
  os << buf;
  for (const auto& s : st) {
    ++count[s.state];
    std::snprintf(buf, sizeof buf, "%-6lld %-8s %-5s %-12s %-14s %llu  ", static_cast<long long>(s.task.id),
                  state_name(s.state), s.exit_code ? std::to_string(*s.exit_code).c_str() : "-",
                  s.slurm_state.empty() ? "-" : s.slurm_state.c_str(), s.job.empty() ? "-" : s.job.c_str(),
                  static_cast<unsigned long long>(s.task.seed));
    os << buf << s.task.configuration() << "\n";
  }
  for (const auto& s : st) {
    if (s.state != TaskState::failed || s.log_tail.empty()) continue;
    os << "\n--- task " << s.task.id << " (" << s.task.dir << "/task.log, last lines) ---\n" << s.log_tail;
  }
  os << "\n" << st.size() << " tasks:";
  for (auto k : {TaskState::done, TaskState::running, TaskState::pending, TaskState::failed, TaskState::missing})
    os << " " << count[k] << " " << state_name(k);
  os << "\n";
}

}  // namespace crackseg::sweep
