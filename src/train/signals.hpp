// Preemption: SIGUSR1 (SLURM's --signal=B:USR1@T warning, forwarded by the array script) and
// SIGTERM (scancel, node shutdown) set a flag; training checks it at step boundaries, where
// all ranks agree (a signal may reach only some ranks), rank 0 writes a checkpoint and every
// rank exits with cli::kPreempted (75) so the array script requeues the task.
#pragma once

namespace crackseg {

namespace dist {
class Communicator;
}

// Installs the handlers for SIGUSR1 and SIGTERM (idempotent). The handler only stores to a
// lock-free atomic, which is async-signal-safe. Repeated signals are not escalated: SLURM may
// send USR1 (the warning) and then TERM (preemption) and the checkpoint must still be written;
// SLURM's SIGKILL after KillWait/GraceTime, or SIGINT, ends a rank that does not stop in time.
void install_stop_signal_handlers();

// Blocks SIGUSR1 and SIGTERM in the calling thread (call it first thing in main, before MPI,
// OpenMP or Kokkos start threads, which inherit the mask): a stop request that arrives while
// the process is still starting up stays pending instead of killing it. Then either
// install_stop_signal_handlers() + unblock_stop_signals() (the pending request sets the flag),
// or unblock_stop_signals() alone (default action: the process ends as before).
void block_stop_signals();
void unblock_stop_signals();

// This process received SIGUSR1/SIGTERM since start (or since clear_stop_request()).
[[nodiscard]] bool stop_requested();
// The signal that set the flag (SIGUSR1, SIGTERM), or 0.
[[nodiscard]] int stop_signal();
void clear_stop_request();

// Collective (call it on every rank at the same step boundary): true on every rank when any
// rank has been asked to stop. One MAX-allreduce of a single integer.
[[nodiscard]] bool agree_stop(dist::Communicator& comm);

}  // namespace crackseg
