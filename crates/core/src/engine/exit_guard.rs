//! Process exit while an engine thread is still computing (a stream abandoned without
//! `shutdown()`, e.g. a generator the caller stopped iterating): the exit path then runs MLX's and
//! the C++ runtime's static destructors while that thread may be inside MLX — heap corruption,
//! seen as an intermittent SIGABRT (`malloc_consolidate(): unaligned fastbin chunk`) at exit.
//! Not only the engine thread: with pipelined decode, work queued by `async_eval` keeps running
//! on MLX's own stream thread after a step returns.
//! An exit handler registered after MLX was loaded runs before those destructors: it raises
//! `EXITING` and waits (bounded) until no engine thread holds a [`Busy`] token. An engine thread
//! holds one from the moment it leaves idle until it goes idle again, and gives it up only after
//! waiting for its queued MLX work ([`settle`]); once the flag is up it settles, gives the token
//! up and stops for good without touching MLX again (the exiting process ends it).

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

static EXITING: AtomicBool = AtomicBool::new(false);
static BUSY: AtomicUsize = AtomicUsize::new(0);
/// How long the exit handler waits for a step in progress (a long prefill chunk on a slow CPU).
const MAX_WAIT: Duration = Duration::from_secs(10);

/// Registers the exit handler once per process (call before an engine thread starts).
pub fn install() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        extern "C" fn at_exit() {
            stop_engine_threads();
        }
        unsafe {
            libc::atexit(at_exit);
        }
    });
}

/// Stops every engine thread for the rest of the process's life: raises `EXITING` and waits
/// (bounded) until none has MLX work in flight. For hosts that tear down before `exit()` runs
/// (Node's environment cleanup hooks run before any `atexit` handler or static destructor —
/// and MLX creates some of its static state lazily, after our `atexit` registration, so its
/// destructors would run before that handler).
pub fn stop_engine_threads() {
    EXITING.store(true, Ordering::SeqCst);
    let deadline = Instant::now() + MAX_WAIT;
    while BUSY.load(Ordering::SeqCst) > 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Whether the process is exiting (the caller should [`settle`] and [`park_forever`]).
pub fn exiting() -> bool {
    EXITING.load(Ordering::SeqCst)
}

/// Waits until the calling thread's queued MLX work has run (its default stream is idle).
pub fn settle() {
    unsafe {
        mlx_sys::mlx_synchronize_default();
    }
}

/// Marks the calling engine thread as having MLX work in flight until the guard drops. Once the
/// process is exiting the thread must not touch MLX any more: it parks for good instead.
pub fn enter_or_park() -> Busy {
    BUSY.fetch_add(1, Ordering::SeqCst);
    if EXITING.load(Ordering::SeqCst) {
        BUSY.fetch_sub(1, Ordering::SeqCst);
        park_forever();
    }
    Busy
}

pub struct Busy;

impl Drop for Busy {
    fn drop(&mut self) {
        BUSY.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Stops the calling thread for the rest of the process's life, leaving its MLX state untouched.
pub fn park_forever() -> ! {
    loop {
        std::thread::park();
    }
}
