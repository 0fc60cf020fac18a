//! A process-wide set of long-lived helper threads for the CPU kNN kernels and the scorer's
//! lanes: [`run`] runs one closure on the caller and on helpers at once and returns when all
//! are done, like `std::thread::scope` with one spawn per helper, but without creating threads.
//!
//! Why not a new thread per call: measured in the daemon at a camera's rate (one frame every
//! 100 ms), Linux placed a freshly created thread on its parent's core while the other core sat
//! idle, so the two shared one core until the load balancer moved one, 1–4 ms later; the kNN
//! took 15–18 ms instead of 10–11. A helper that sleeps between calls wakes where it last ran.
//!
//! Where a helper wakes matters as much: Linux woke a sleeping helper on the caller's own core
//! (where it had last run) while the other stayed idle, with the same result. So before each
//! call every helper's affinity leaves out the core the caller is on (within the cores the
//! process may use; not at all where it may use only one).
//!
//! ONNX Runtime's own pool threads have the same problem. `model::runtime` has ONNX Runtime
//! create them through [`adopt_current`], and [`keep_adopted_off_caller`] applies the same rule
//! to them before a run on the shared pool.
//!
//! Helpers sleep on a condition variable between calls (no spinning: the cores belong to the
//! next stage). One call uses them at a time; a second caller meanwhile (another model's
//! scoring thread) gets scoped threads instead of waiting.

use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Condvar, Mutex, OnceLock, PoisonError};

/// At most this many helpers, whatever the core count.
const MAX_HELPERS: usize = 63;

/// The closure of the current call, its lifetime erased. Sound because [`Workers::run`] does
/// not return before every helper it handed it to has finished calling it.
#[derive(Clone, Copy)]
struct Job(&'static (dyn Fn() + Sync));

struct Slot {
    job: Mutex<Option<Job>>,
    ready: Condvar,
    /// The helper's thread id, once it has started (0 before).
    tid: AtomicI32,
    /// The core its affinity leaves out now (-1: none).
    kept_off: AtomicI32,
}

struct Shared {
    slots: Vec<Slot>,
    /// Helpers of the current call that have finished, and whether any of them panicked.
    done: Mutex<(usize, bool)>,
    finished: Condvar,
}

/// The helper threads.
pub struct Workers {
    shared: &'static Shared,
    /// Helpers running: the first `started` slots.
    started: usize,
    /// Held for the length of a call.
    busy: Mutex<()>,
    /// The cores this process may run on, at start.
    allowed: Option<libc::cpu_set_t>,
}

/// The process's helpers: one fewer than the cores, started on first use.
pub fn global() -> &'static Workers {
    static WORKERS: OnceLock<Workers> = OnceLock::new();
    WORKERS.get_or_init(|| {
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        Workers::start(cores.saturating_sub(1).min(MAX_HELPERS))
    })
}

/// Runs `f` on `threads` threads at once (the caller and `threads - 1` helpers) and returns
/// when every one has returned. `f` typically takes pieces of work from a shared queue until
/// none are left.
///
/// # Panics
/// If `f` panicked on any of them.
pub fn run(threads: usize, f: &(dyn Fn() + Sync)) {
    global().run(threads, f)
}

impl Workers {
    fn start(helpers: usize) -> Workers {
        let slots = (0..helpers)
            .map(|_| Slot {
                job: Mutex::new(None),
                ready: Condvar::new(),
                tid: AtomicI32::new(0),
                kept_off: AtomicI32::new(-1),
            })
            .collect();
        let shared: &'static Shared =
            Box::leak(Box::new(Shared { slots, done: Mutex::new((0, false)), finished: Condvar::new() }));
        // A helper that cannot be started (the system is out of threads) leaves fewer; calls
        // that want more get scoped threads, as when the helpers are busy.
        let started = (0..helpers)
            .take_while(|&i| {
                std::thread::Builder::new()
                    .name(format!("cpu-worker-{i}"))
                    .spawn(move || helper(shared, i))
                    .is_ok()
            })
            .count();
        Workers { shared, started, busy: Mutex::new(()), allowed: allowed_cores() }
    }

    /// Sets `slot`'s helper to run anywhere it may except on core `caller`.
    fn keep_off(&self, slot: &Slot, caller: i32) {
        if let Some(allowed) = self.allowed.as_ref() {
            keep_off(allowed, slot.tid.load(Ordering::Acquire), &slot.kept_off, caller);
        }
    }

    fn run(&self, threads: usize, f: &(dyn Fn() + Sync)) {
        let helpers = threads.saturating_sub(1);
        if helpers == 0 {
            return f();
        }
        let guard = match self.busy.try_lock() {
            Ok(guard) if helpers <= self.started => guard,
            // Busy, or asked for more threads than there are cores: scoped threads.
            _ => {
                return std::thread::scope(|scope| {
                    for _ in 0..helpers {
                        scope.spawn(f);
                    }
                    f();
                });
            }
        };
        // SAFETY: the reference is handed to helpers only, and this function waits below until
        // each of them has finished with it; nothing keeps it after that.
        let job = Job(unsafe { std::mem::transmute::<&(dyn Fn() + Sync), &'static (dyn Fn() + Sync)>(f) });
        *self.shared.done.lock().unwrap_or_else(PoisonError::into_inner) = (0, false);
        // SAFETY: no arguments; -1 on failure, which `keep_off` ignores.
        let caller = unsafe { libc::sched_getcpu() };
        for slot in &self.shared.slots[..helpers] {
            self.keep_off(slot, caller);
            *slot.job.lock().unwrap_or_else(PoisonError::into_inner) = Some(job);
            slot.ready.notify_one();
        }
        let own = catch_unwind(AssertUnwindSafe(f));
        let mut done = self.shared.done.lock().unwrap_or_else(PoisonError::into_inner);
        while done.0 < helpers {
            done = self.shared.finished.wait(done).unwrap_or_else(PoisonError::into_inner);
        }
        let helper_panicked = done.1;
        drop(done);
        drop(guard);
        if let Err(panic) = own {
            resume_unwind(panic);
        }
        assert!(!helper_panicked, "a CPU worker panicked");
    }
}

/// Sets thread `tid` to run anywhere in `allowed` except on core `caller`, unless it already
/// does (`kept_off`), or `caller` is unknown or the only core allowed.
fn keep_off(allowed: &libc::cpu_set_t, tid: i32, kept_off: &AtomicI32, caller: i32) {
    if tid == 0 || caller < 0 || kept_off.load(Ordering::Relaxed) == caller {
        return;
    }
    let mut set = *allowed;
    // SAFETY: `set` is a valid cpu_set_t and `caller` a core number sched_getcpu returned.
    unsafe {
        if !libc::CPU_ISSET(caller as usize, &set) || libc::CPU_COUNT(&set) < 2 {
            return;
        }
        libc::CPU_CLR(caller as usize, &mut set);
        if libc::sched_setaffinity(tid, std::mem::size_of::<libc::cpu_set_t>(), &set) == 0 {
            kept_off.store(caller, Ordering::Relaxed);
        }
    }
}

/// Threads of another pool (ONNX Runtime's), registered by [`adopt_current`]: id and the core
/// kept off.
static ADOPTED: Mutex<Vec<(i32, AtomicI32)>> = Mutex::new(Vec::new());

/// Registers the calling thread (a pool thread that some library created) so that
/// [`keep_adopted_off_caller`] moves it off its caller's core.
pub fn adopt_current() {
    // SAFETY: no arguments.
    let tid = unsafe { libc::gettid() };
    ADOPTED.lock().unwrap_or_else(PoisonError::into_inner).push((tid, AtomicI32::new(-1)));
}

/// Lets every adopted thread wake anywhere but on the calling thread's core: call before
/// handing work to their pool.
pub fn keep_adopted_off_caller() {
    let adopted = ADOPTED.lock().unwrap_or_else(PoisonError::into_inner);
    if adopted.is_empty() {
        return;
    }
    let Some(allowed) = global().allowed.as_ref() else { return };
    // SAFETY: no arguments; -1 on failure, which `keep_off` ignores.
    let caller = unsafe { libc::sched_getcpu() };
    for (tid, kept_off) in adopted.iter() {
        keep_off(allowed, *tid, kept_off, caller);
    }
}

/// The cores this process may use, or `None` if the kernel will not say.
fn allowed_cores() -> Option<libc::cpu_set_t> {
    // SAFETY: a zeroed cpu_set_t is an empty set; the kernel fills it for this thread (the
    // first user of the workers, which has the process's affinity).
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        (libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) == 0).then_some(set)
    }
}

fn helper(shared: &'static Shared, i: usize) {
    let slot = &shared.slots[i];
    // SAFETY: no arguments.
    slot.tid.store(unsafe { libc::gettid() }, Ordering::Release);
    loop {
        let job = {
            let mut job = slot.job.lock().unwrap_or_else(PoisonError::into_inner);
            loop {
                match job.take() {
                    Some(j) => break j,
                    None => job = slot.ready.wait(job).unwrap_or_else(PoisonError::into_inner),
                }
            }
        };
        let panicked = catch_unwind(AssertUnwindSafe(job.0)).is_err();
        let mut done = shared.done.lock().unwrap_or_else(PoisonError::into_inner);
        done.0 += 1;
        done.1 |= panicked;
        shared.finished.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Mutex;

    #[test]
    fn every_piece_is_done_once_and_on_several_threads() {
        let next = AtomicUsize::new(0);
        let seen = Mutex::new(vec![0u32; 1000]);
        let threads = Mutex::new(std::collections::HashSet::new());
        for _ in 0..20 {
            next.store(0, Ordering::Relaxed);
            super::run(3, &|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= 1000 {
                    return;
                }
                threads.lock().unwrap().insert(std::thread::current().id());
                seen.lock().unwrap()[i] += 1;
                std::thread::yield_now();
            });
        }
        assert!(seen.into_inner().unwrap().iter().all(|&n| n == 20), "each piece once per call");
        assert!(threads.into_inner().unwrap().len() >= 2, "helpers or scoped threads took part");
    }

    #[test]
    fn a_panic_on_a_helper_reaches_the_caller_and_the_workers_stay_usable() {
        let calls = AtomicUsize::new(0);
        let caught = std::panic::catch_unwind(|| {
            super::run(2, &|| {
                if calls.fetch_add(1, Ordering::SeqCst) == 1 {
                    panic!("one piece failed");
                }
            })
        });
        assert!(caught.is_err());
        let after = AtomicUsize::new(0);
        super::run(2, &|| {
            after.fetch_add(1, Ordering::SeqCst);
        });
        assert_eq!(after.into_inner(), 2);
    }
}
