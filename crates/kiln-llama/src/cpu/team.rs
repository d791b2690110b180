//! A persistent team of threads for the CPU engine's forward passes.
//!
//! A decode step is about 150 small matrix products with cheap work in between (norms, RoPE,
//! attention over a short cache). Run as rayon fork-joins, every product pays for waking the
//! other threads and for joining them (about 10 % of a SmolLM2 decode step on two cores). A team
//! instead starts the whole pass once on every thread and splits each step into chunks
//! ([`Member::phase`]): every member takes the chunks of its own share, then helps with what is
//! left of the others' shares, and waits (spinning, a fraction of a microsecond) until the step
//! is complete. Uncontended, that is llama.cpp's static split with a barrier; when the OS preempts
//! a member (a busy machine), the others take over its chunks instead of waiting for it.
//!
//! The team has as many members as rayon's current pool has threads (`RAYON_NUM_THREADS`, or the
//! pool a caller installs); the calling thread is member 0 and the others are worker threads the
//! team keeps. Between passes the workers spin for a short while (the next decode step usually
//! follows within microseconds), then sleep. One pass uses the team at a time: a pass that finds it
//! busy (another thread's pass, or a pass started from inside a pass) runs alone on its calling
//! thread instead of waiting, so passes can never deadlock one another.

use std::any::Any;
use std::cell::Cell;
use std::ops::Range;
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, TryLockError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The work of one pass, run by every member.
type Job<'a> = dyn Fn(&Member<'_>) + Sync + 'a;

/// How long idle workers spin for the next pass before they sleep.
const SPIN_IDLE: Duration = Duration::from_millis(2);

/// One member's view of a running pass.
pub(crate) struct Member<'a> {
    /// This member's index, `0..size` (0 is the thread that started the pass).
    pub(crate) index: usize,
    /// How many members run the pass.
    pub(crate) size: usize,
    shared: Option<&'a Shared>,
    /// The first ticket of this member's next phase.
    base: Cell<usize>,
}

impl Member<'_> {
    /// A pass of one member (no other threads).
    pub(crate) fn alone() -> Member<'static> {
        Member {
            index: 0,
            size: 1,
            shared: None,
            base: Cell::new(0),
        }
    }

    /// Runs the pass's next phase: `chunks` independent pieces of work, each done by exactly one
    /// member (`work(c)` for `c` in `0..chunks`). Every member must call `phase` with the same
    /// `chunks` in the same order. A member first takes the chunks of its own share (a contiguous
    /// range, as `share_of` cuts it) and then helps with the shares of the others that
    /// are still open, so a member that the OS preempts only delays the chunk it is in. Returns
    /// when every chunk of the phase is done; their writes are then visible to this member.
    ///
    /// # Panics
    /// When another member of the pass panicked (the pass is abandoned).
    pub(crate) fn phase(&self, chunks: usize, mut work: impl FnMut(usize)) {
        let base = self.base.get();
        let end = base + chunks;
        self.base.set(end);
        let Some(s) = self.shared else {
            (0..chunks).for_each(work);
            return;
        };
        for k in 0..self.size {
            let owner = (self.index + k) % self.size;
            let own = share_of(owner, self.size, chunks, 1);
            let (from, to) = (base + own.start, base + own.end);
            let next = &s.next[owner].0;
            loop {
                let cur = next.load(Ordering::Relaxed);
                // A counter below this phase's range is left from earlier phases.
                let at = cur.max(from);
                if at >= to {
                    break;
                }
                if next
                    .compare_exchange_weak(cur, at + 1, Ordering::Relaxed, Ordering::Relaxed)
                    .is_ok()
                {
                    work(at - base);
                    s.done[self.index].0.fetch_add(1, Ordering::Release);
                }
            }
        }
        let mut spins = 0u32;
        while s
            .done
            .iter()
            .map(|d| d.0.load(Ordering::Acquire))
            .sum::<usize>()
            < end
        {
            if s.failed.load(Ordering::Relaxed) {
                panic!("another member of the CPU engine's thread team panicked");
            }
            spins = spins.wrapping_add(1);
            if spins > 1 << 12 {
                // An oversubscribed machine: let the member we wait for run.
                std::thread::yield_now();
            } else {
                std::hint::spin_loop();
            }
        }
    }
}

/// Member `index` of `size`'s share of `0..len` in whole units of `align` (the last unit may be
/// shorter): contiguous, in member order, sizes differing by at most one unit.
fn share_of(index: usize, size: usize, len: usize, align: usize) -> Range<usize> {
    let units = len.div_ceil(align.max(1));
    let from = units * index / size;
    let to = units * (index + 1) / size;
    (from * align).min(len)..(to * align).min(len)
}

/// A counter on a cache line of its own.
#[repr(align(128))]
struct Padded(AtomicUsize);

/// State shared by the members of a team.
struct Shared {
    size: usize,
    /// The current pass (its lifetime erased: [`Team::run`] waits for every worker to finish it
    /// before the real borrow ends).
    job: Mutex<Option<JobPtr>>,
    /// Bumped for every pass.
    generation: AtomicUsize,
    /// Workers finished with the current pass.
    finished: AtomicUsize,
    /// Per member: the next ticket of its share of the current phase (tickets number the chunks
    /// of a pass's phases one after another), and the chunks it has finished.
    next: Box<[Padded]>,
    done: Box<[Padded]>,
    /// Some member panicked during the current pass.
    failed: AtomicBool,
    shutdown: AtomicBool,
    /// Workers asleep (waiting on `wake` under `sleep`).
    sleeping: AtomicUsize,
    sleep: Mutex<()>,
    wake: Condvar,
    /// The first panic of the current pass.
    panic: Mutex<Option<Box<dyn Any + Send>>>,
}

/// A pointer to a pass's job that can cross to the workers.
#[derive(Clone, Copy)]
struct JobPtr(*const Job<'static>);
// SAFETY: the job is `Sync`, and `Team::run` keeps it alive until no worker uses the pointer.
unsafe impl Send for JobPtr {}

/// The worker threads of a team.
struct Team {
    shared: Arc<Shared>,
    workers: Vec<JoinHandle<()>>,
}

impl Team {
    fn new(size: usize) -> std::io::Result<Self> {
        let shared = Arc::new(Shared {
            size,
            job: Mutex::new(None),
            generation: AtomicUsize::new(0),
            finished: AtomicUsize::new(0),
            next: (0..size).map(|_| Padded(AtomicUsize::new(0))).collect(),
            done: (0..size).map(|_| Padded(AtomicUsize::new(0))).collect(),
            failed: AtomicBool::new(false),
            shutdown: AtomicBool::new(false),
            sleeping: AtomicUsize::new(0),
            sleep: Mutex::new(()),
            wake: Condvar::new(),
            panic: Mutex::new(None),
        });
        let mut team = Self {
            shared,
            workers: Vec::with_capacity(size - 1),
        };
        for index in 1..size {
            let shared = Arc::clone(&team.shared);
            let handle = std::thread::Builder::new()
                .name(format!("kiln-cpu-{index}"))
                .spawn(move || worker(&shared, index))?;
            team.workers.push(handle);
        }
        Ok(team)
    }

    /// Runs `job` on every member (the calling thread is member 0) and returns when all are done.
    fn run(&self, job: &Job<'_>) {
        let s = &*self.shared;
        s.failed.store(false, Ordering::Relaxed);
        for c in s.next.iter().chain(s.done.iter()) {
            c.0.store(0, Ordering::Relaxed);
        }
        s.finished.store(0, Ordering::Relaxed);
        // SAFETY: only the lifetime is erased; the pointer is dropped (set to `None`) before this
        // function returns, after every worker has finished with it.
        let erased: *const Job<'static> = unsafe { std::mem::transmute(job as *const Job<'_>) };
        *lock(&s.job) = Some(JobPtr(erased));
        s.generation.fetch_add(1, Ordering::SeqCst);
        if s.sleeping.load(Ordering::SeqCst) > 0 {
            let _guard = lock(&s.sleep);
            s.wake.notify_all();
        }
        let me = Member {
            index: 0,
            size: s.size,
            shared: Some(s),
            base: Cell::new(0),
        };
        if let Err(payload) = catch_unwind(AssertUnwindSafe(|| job(&me))) {
            s.record_panic(payload);
        }
        let mut spins = 0u32;
        while s.finished.load(Ordering::Acquire) < s.size - 1 {
            spins = spins.wrapping_add(1);
            if spins > 1 << 16 {
                std::thread::yield_now();
            } else {
                std::hint::spin_loop();
            }
        }
        *lock(&s.job) = None;
        if s.failed.load(Ordering::Relaxed) {
            let payload = lock(&s.panic).take();
            resume_unwind(payload.unwrap_or_else(|| Box::new("CPU engine thread team failed")));
        }
    }
}

impl Shared {
    fn record_panic(&self, payload: Box<dyn Any + Send>) {
        let mut first = lock(&self.panic);
        if first.is_none() {
            *first = Some(payload);
        }
        self.failed.store(true, Ordering::Release);
    }
}

impl Drop for Team {
    fn drop(&mut self) {
        self.shared.shutdown.store(true, Ordering::SeqCst);
        {
            let _guard = lock(&self.shared.sleep);
            self.shared.wake.notify_all();
        }
        for w in self.workers.drain(..) {
            // A worker never panics outside a job (jobs are caught), so this cannot fail.
            let _ = w.join();
        }
    }
}

/// Locks `m`, ignoring poisoning (the protected values stay consistent: plain stores).
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn worker(s: &Shared, index: usize) {
    let mut seen = 0usize;
    loop {
        // Wait for the next pass: spin, then sleep.
        let start = Instant::now();
        let mut spins = 0u32;
        loop {
            if s.generation.load(Ordering::Acquire) != seen || s.shutdown.load(Ordering::Acquire) {
                break;
            }
            spins = spins.wrapping_add(1);
            if spins.is_multiple_of(1024) && start.elapsed() > SPIN_IDLE {
                let mut guard = lock(&s.sleep);
                s.sleeping.fetch_add(1, Ordering::SeqCst);
                while s.generation.load(Ordering::SeqCst) == seen
                    && !s.shutdown.load(Ordering::SeqCst)
                {
                    guard = s
                        .wake
                        .wait(guard)
                        .unwrap_or_else(std::sync::PoisonError::into_inner);
                }
                s.sleeping.fetch_sub(1, Ordering::SeqCst);
                break;
            }
            std::hint::spin_loop();
        }
        if s.shutdown.load(Ordering::Acquire) {
            return;
        }
        seen = s.generation.load(Ordering::Acquire);
        let job = *lock(&s.job);
        if let Some(JobPtr(ptr)) = job {
            let me = Member {
                index,
                size: s.size,
                shared: Some(s),
                base: Cell::new(0),
            };
            // SAFETY: `Team::run` keeps the job alive until this worker reports done below.
            let job = unsafe { &*ptr };
            if let Err(payload) = catch_unwind(AssertUnwindSafe(|| job(&me))) {
                s.record_panic(payload);
            }
        }
        s.finished.fetch_add(1, Ordering::Release);
    }
}

/// A buffer the members of a pass share: each chunk of a phase writes its own part, and every
/// member reads what the chunks wrote once the phase is over. The accessors are `unsafe`: the
/// caller states which part is its own during the phase.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Buf<T = f32> {
    ptr: *mut T,
    len: usize,
}

// SAFETY: a `Buf` is a pointer handed to the members of one pass; the members' barrier protocol
// (documented at each use) keeps their accesses apart.
unsafe impl<T> Send for Buf<T> {}
// SAFETY: as above.
unsafe impl<T> Sync for Buf<T> {}

impl<T> Buf<T> {
    /// A view of `v` (which must outlive every use of the view).
    pub(crate) fn new(v: &mut [T]) -> Self {
        Self {
            ptr: v.as_mut_ptr(),
            len: v.len(),
        }
    }

    /// Elements.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// The start of the buffer, for raw writes inside it.
    pub(crate) fn ptr(&self) -> *mut T {
        self.ptr
    }

    /// Elements `r`, to write.
    ///
    /// # Safety
    /// The buffer is alive and, until the borrow ends, no one else reads or writes `r`.
    ///
    /// # Panics
    /// When `r` is not inside the buffer.
    #[allow(clippy::mut_from_ref)]
    pub(crate) unsafe fn slice_mut(&self, r: Range<usize>) -> &mut [T] {
        assert!(
            r.start <= r.end && r.end <= self.len,
            "{r:?} outside a buffer of {}",
            self.len
        );
        // SAFETY: in bounds (checked); exclusive by the caller's guarantee.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.add(r.start), r.end - r.start) }
    }

    /// Elements `r`, to read.
    ///
    /// # Safety
    /// The buffer is alive and, until the borrow ends, no one writes `r`.
    ///
    /// # Panics
    /// When `r` is not inside the buffer.
    pub(crate) unsafe fn slice(&self, r: Range<usize>) -> &[T] {
        assert!(
            r.start <= r.end && r.end <= self.len,
            "{r:?} outside a buffer of {}",
            self.len
        );
        // SAFETY: in bounds (checked); no writer by the caller's guarantee.
        unsafe { std::slice::from_raw_parts(self.ptr.add(r.start), r.end - r.start) }
    }

    /// The whole buffer, to read.
    ///
    /// # Safety
    /// As [`Buf::slice`] for every element.
    pub(crate) unsafe fn all(&self) -> &[T] {
        // SAFETY: the caller's guarantee.
        unsafe { self.slice(0..self.len) }
    }
}

/// The process's team (created on first use, rebuilt when the wanted size changes).
static TEAM: Mutex<Option<Team>> = Mutex::new(None);

/// Whether passes may use the team (`KILN_CPU_TEAM=0` turns it off, for comparisons).
fn enabled() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ON.get_or_init(|| std::env::var("KILN_CPU_TEAM").map_or(true, |v| v != "0"))
}

/// Runs `job` on a team of `rayon::current_num_threads()` members, or on the calling thread alone
/// when that is one, when the team is busy, or when its threads cannot be started.
///
/// # Panics
/// Re-raises a panic of any member.
pub(crate) fn run(job: &Job<'_>) {
    let size = rayon::current_num_threads().max(1);
    if size > 1 && enabled() {
        let guard = match TEAM.try_lock() {
            Ok(g) => Some(g),
            Err(TryLockError::Poisoned(p)) => Some(p.into_inner()),
            Err(TryLockError::WouldBlock) => None,
        };
        if let Some(mut guard) = guard {
            if guard.as_ref().is_none_or(|t| t.shared.size != size) {
                *guard = None;
                *guard = Team::new(size).ok();
            }
            if let Some(team) = guard.as_ref() {
                team.run(job);
                return;
            }
        }
    }
    job(&Member::alone());
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU64;

    #[test]
    fn every_chunk_runs_once_and_phases_are_ordered() {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(3)
            .build()
            .unwrap();
        pool.install(|| {
            for round in 0..50u64 {
                let data: Vec<AtomicU64> = (0..1000).map(|_| AtomicU64::new(0)).collect();
                let runs = AtomicU64::new(0);
                let total = AtomicU64::new(0);
                run(&|m: &Member<'_>| {
                    m.phase(100, |c| {
                        for (i, v) in data.iter().enumerate().skip(c * 10).take(10) {
                            v.fetch_add(i as u64 + round, Ordering::Relaxed);
                        }
                        runs.fetch_add(1, Ordering::Relaxed);
                    });
                    // After the phase every member sees every chunk's writes.
                    let sum: u64 = data.iter().map(|v| v.load(Ordering::Relaxed)).sum();
                    total.fetch_add(sum, Ordering::Relaxed);
                    m.phase(3, |_| {
                        runs.fetch_add(1, Ordering::Relaxed);
                    });
                    m.phase(0, |_| unreachable!());
                });
                let want: u64 = (0..1000u64).map(|i| i + round).sum();
                assert_eq!(runs.load(Ordering::Relaxed), 103);
                // Each member added the complete sum once.
                assert_eq!(total.load(Ordering::Relaxed) % want, 0);
            }
        });
    }

    #[test]
    fn a_slow_member_does_not_hold_the_others() {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(2)
            .build()
            .unwrap();
        pool.install(|| {
            let by = [AtomicU64::new(0), AtomicU64::new(0)];
            run(&|m: &Member<'_>| {
                if m.index == 1 {
                    // Preempted before it starts: member 0 takes its whole share.
                    std::thread::sleep(Duration::from_millis(50));
                }
                m.phase(10, |_| {
                    by[m.index].fetch_add(1, Ordering::Relaxed);
                });
            });
            let counts = [by[0].load(Ordering::Relaxed), by[1].load(Ordering::Relaxed)];
            assert_eq!(counts[0] + counts[1], 10);
        });
    }

    #[test]
    fn shares_cover_the_range_once() {
        for size in 1..6 {
            for len in [0, 1, 15, 16, 17, 100, 961] {
                let mut next = 0;
                for index in 0..size {
                    let r = share_of(index, size, len, 16);
                    assert_eq!(r.start, next);
                    assert!(r.start.is_multiple_of(16) || r.start == len);
                    next = r.end;
                }
                assert_eq!(next, len);
            }
        }
    }

    #[test]
    fn a_panicking_member_fails_the_pass_without_hanging() {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(2)
            .build()
            .unwrap();
        pool.install(|| {
            let r = catch_unwind(|| {
                run(&|m: &Member<'_>| {
                    m.phase(8, |c| {
                        if c == 5 {
                            panic!("boom");
                        }
                    });
                    m.phase(1, |_| {});
                });
            });
            assert!(r.is_err());
            // The team still works afterwards.
            let count = AtomicUsize::new(0);
            run(&|m: &Member<'_>| {
                m.phase(4, |_| {
                    count.fetch_add(1, Ordering::Relaxed);
                });
            });
            assert_eq!(count.load(Ordering::Relaxed), 4);
        });
    }

    #[test]
    fn a_pass_inside_a_pass_runs_alone() {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(2)
            .build()
            .unwrap();
        pool.install(|| {
            let inner = AtomicUsize::new(0);
            run(&|m: &Member<'_>| {
                m.phase(1, |_| {
                    run(&|n: &Member<'_>| {
                        assert_eq!(n.size, 1);
                        inner.fetch_add(1, Ordering::Relaxed);
                    });
                });
            });
            assert_eq!(inner.load(Ordering::Relaxed), 1);
        });
    }

    #[test]
    #[ignore = "timing probe: cargo test --release -p kiln-llama --lib phase_cost -- --ignored --nocapture"]
    fn phase_cost() {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(2)
            .build()
            .unwrap();
        pool.install(|| {
            for _ in 0..3 {
                let t0 = Instant::now();
                run(&|m: &Member<'_>| {
                    for _ in 0..100_000 {
                        m.phase(16, |_| {});
                    }
                });
                eprintln!("phase of 16 empty chunks: {:?}", t0.elapsed() / 100_000);
                let t0 = Instant::now();
                for _ in 0..10_000 {
                    run(&|m: &Member<'_>| m.phase(2, |_| {}));
                }
                eprintln!("pass: {:?}", t0.elapsed() / 10_000);
            }
        });
    }
}
