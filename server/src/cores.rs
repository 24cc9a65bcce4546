//! One runtime per core, and where a new connection is served.
//!
//! `serve` runs a single-threaded tokio runtime on each of `threads` OS
//! threads (one per core by default), each with its own listening socket
//! per address (`SO_REUSEPORT`: the kernel spreads new connections over
//! them by a hash of their addresses). A connection stays on the thread
//! that accepted it for its whole life: no task moves between threads, and
//! no thread wakes another for a connection. With one work-stealing runtime
//! a connection made after another cost 1.3–1.5× the proxy CPU of a
//! single-threaded runtime, the difference being the wake-ups of the
//! other worker (bench/README.md). The floor relay (`bench/floor/`) is laid
//! out the same way.
//!
//! What work stealing gave, balance, comes back at accept: each runtime
//! measures how busy its thread is ([`Load`]: the time it spent running
//! tasks, tokio's own count, sampled every [`SAMPLE`]), and a thread that is busier than
//! [`KEEP_BELOW`] and busier by [`MARGIN`] than the least busy one hands
//! the connection it accepted to that one (the socket is taken out of its
//! event loop and registered in the other's). A thread kept busy by a few
//! heavy relays so stops taking new ones, and a connection never waits
//! behind a busy thread's queue once it is accepted. What is not moved:
//! a relay already running stays where it started.

use std::future::Future;
use std::io;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tokio::runtime::{Handle, Runtime};
use tokio::sync::oneshot;

/// How often a runtime samples how busy its thread was.
pub const SAMPLE: Duration = Duration::from_millis(250);

/// A thread busy less than this (per mille of the last samples) keeps
/// every connection it accepts.
pub const KEEP_BELOW: u32 = 700;

/// A busier thread hands a connection to the least busy one when that one
/// is this much (per mille) less busy.
pub const MARGIN: u32 = 250;

/// How busy one runtime's thread is, and what it served. Each on a cache
/// line of its own: a thread counts every connection it serves, and must
/// not invalidate the line its neighbour counts on.
#[derive(Debug, Default)]
#[repr(align(128))]
pub struct Load {
    /// Busy per mille, smoothed over the last samples.
    permille: AtomicU32,
    /// Connections this runtime served (accepted here or handed to it).
    served: AtomicU64,
    /// Connections it accepted and handed to another runtime.
    handed_off: AtomicU64,
}

impl Load {
    pub fn permille(&self) -> u32 {
        self.permille.load(Ordering::Relaxed)
    }
    pub fn served(&self) -> u64 {
        self.served.load(Ordering::Relaxed)
    }
    pub fn handed_off(&self) -> u64 {
        self.handed_off.load(Ordering::Relaxed)
    }
}

/// The runtimes a sharded server runs on: their handles and loads, shard
/// `k` on `handles[k]`.
#[derive(Debug)]
pub struct Shards {
    handles: Vec<Handle>,
    loads: Arc<[Load]>,
}

impl Shards {
    pub fn len(&self) -> usize {
        self.handles.len()
    }
    pub fn is_empty(&self) -> bool {
        self.handles.is_empty()
    }
    pub fn handle(&self, k: usize) -> &Handle {
        &self.handles[k]
    }
    pub fn load(&self, k: usize) -> &Load {
        &self.loads[k]
    }

    /// Where a connection accepted by shard `k` is served: `None` to keep
    /// it, or the shard to hand it to.
    pub fn hand_off_from(&self, k: usize) -> Option<usize> {
        pick(self.loads.len(), |j| self.loads[j].permille(), k)
    }

    pub(crate) fn count_served(&self, k: usize) {
        self.loads[k].served.fetch_add(1, Ordering::Relaxed);
    }
    pub(crate) fn count_handed_off(&self, k: usize) {
        self.loads[k].handed_off.fetch_add(1, Ordering::Relaxed);
    }

    /// Sample shard `k`'s busy time every [`SAMPLE`], forever. Must run on
    /// shard `k`'s runtime (it reads that thread's clock).
    pub(crate) async fn sample(self: Arc<Self>, k: usize) {
        let mut tick = tokio::time::interval(SAMPLE);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last = (Instant::now(), busy_so_far());
        let label = k.to_string();
        loop {
            tick.tick().await;
            let now = (Instant::now(), busy_so_far());
            let wall = now.0.duration_since(last.0).as_nanos().max(1);
            let busy = now.1.saturating_sub(last.1).as_nanos();
            let sample = (busy * 1000 / wall).min(1000) as u32;
            let load = &self.loads[k];
            let permille = (load.permille() + sample) / 2;
            load.permille.store(permille, Ordering::Relaxed);
            crate::metrics::thread_load(&label, permille, load.served(), load.handed_off());
            last = now;
        }
    }
}

/// The policy of [`Shards::hand_off_from`]: shard `k` of `n`, whose loads
/// (per mille) `load` reads. No allocation: it runs at every accept.
pub fn pick(n: usize, load: impl Fn(usize) -> u32, k: usize) -> Option<usize> {
    if k >= n {
        return None;
    }
    let mine = load(k);
    if mine < KEEP_BELOW {
        return None;
    }
    let (j, least) = (0..n)
        .filter(|&j| j != k)
        .map(|j| (j, load(j)))
        .min_by_key(|&(_, l)| l)?;
    (least + MARGIN <= mine).then_some(j)
}

/// The time this thread's runtime spent running its tasks, in all:
/// tokio's own count (it reads the clock as it starts and stops, at every
/// park; a count of our own, from park and unpark hooks, read it twice
/// more). Called on a runtime's thread.
fn busy_so_far() -> Duration {
    tokio::runtime::Handle::current()
        .metrics()
        .worker_total_busy_duration(0)
}

/// The runtimes, one per thread: shard 0 on the thread that calls
/// [`Cores::block_on`], the others on threads of their own.
pub struct Cores {
    main: Runtime,
    others: Vec<(oneshot::Sender<()>, JoinHandle<()>)>,
    shards: Arc<Shards>,
}

fn runtime(on_park: fn()) -> io::Result<Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .on_thread_park(on_park)
        .build()
}

impl Cores {
    /// `threads` runtimes (at least one); `on_park` runs whenever one of
    /// them goes idle (the logger's flush).
    pub fn start(threads: usize, on_park: fn()) -> io::Result<Cores> {
        let threads = threads.max(1);
        let main = runtime(on_park)?;
        let mut handles = vec![main.handle().clone()];
        let mut others = Vec::new();
        for k in 1..threads {
            let (handle_tx, handle_rx) = std::sync::mpsc::channel();
            let (stop_tx, stop_rx) = oneshot::channel::<()>();
            let thread = std::thread::Builder::new()
                .name(format!("sixsocks-core-{k}"))
                .spawn(move || match runtime(on_park) {
                    Ok(rt) => {
                        let _ = handle_tx.send(Ok(rt.handle().clone()));
                        rt.block_on(async move {
                            let _ = stop_rx.await;
                        });
                        // Sessions still running end with the runtime.
                        rt.shutdown_timeout(Duration::from_millis(100));
                    }
                    Err(e) => {
                        let _ = handle_tx.send(Err(e));
                    }
                })?;
            let handle = handle_rx
                .recv()
                .map_err(|_| io::Error::other("a runtime thread ended at start"))??;
            handles.push(handle);
            others.push((stop_tx, thread));
        }
        let loads: Arc<[Load]> = (0..threads).map(|_| Load::default()).collect();
        Ok(Cores {
            main,
            others,
            shards: Arc::new(Shards { handles, loads }),
        })
    }

    /// The shards, for [`crate::Server::bind_sharded`].
    pub fn shards(&self) -> Arc<Shards> {
        self.shards.clone()
    }

    /// Run `f` on shard 0's runtime, on this thread.
    pub fn block_on<F: Future>(&self, f: F) -> F::Output {
        self.main.block_on(f)
    }

    /// Stop every runtime; tasks still running get `grace` on this one.
    /// Logs what each runtime served and handed to another.
    pub fn shutdown(self, grace: Duration) {
        if self.shards.loads.len() > 1 {
            for (k, load) in self.shards.loads.iter().enumerate() {
                tracing::info!(
                    thread = k,
                    served = load.served(),
                    handed_off = load.handed_off(),
                    "runtime thread's connections"
                );
            }
        }
        for (stop, thread) in self.others {
            let _ = stop.send(());
            let _ = thread.join();
        }
        self.main.shutdown_timeout(grace);
    }
}

/// The default number of runtimes: the cores this process may use.
pub fn default_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pick(loads: &[u32], k: usize) -> Option<usize> {
        super::pick(loads.len(), |j| loads[j], k)
    }

    #[test]
    fn an_idle_or_moderately_busy_thread_keeps_its_connections() {
        assert_eq!(pick(&[0, 0], 0), None);
        assert_eq!(pick(&[KEEP_BELOW - 1, 0], 0), None);
        assert_eq!(pick(&[650, 10], 0), None);
    }

    #[test]
    fn a_busy_thread_hands_to_the_least_busy() {
        assert_eq!(pick(&[1000, 0], 0), Some(1));
        assert_eq!(pick(&[900, 500, 100, 300], 0), Some(2));
        assert_eq!(pick(&[100, 950, 300], 1), Some(0));
    }

    #[test]
    fn threads_equally_busy_keep_their_own() {
        assert_eq!(pick(&[1000, 1000], 0), None);
        assert_eq!(pick(&[900, 700], 0), None);
        assert_eq!(pick(&[950, 700], 0), Some(1));
    }

    #[test]
    fn one_thread_or_a_bad_index_keeps() {
        assert_eq!(pick(&[1000], 0), None);
        assert_eq!(pick(&[1000, 0], 5), None);
    }

    #[test]
    fn busy_time_counts_the_running_stretch_not_the_parked_one() {
        fn nothing() {}
        let rt = runtime(nothing).unwrap();
        let (busy, wall) = rt.block_on(async {
            let t0 = Instant::now();
            let before = busy_so_far();
            // 20 ms running, then 30 ms parked, then a park to count it.
            let spin = Instant::now();
            while spin.elapsed() < Duration::from_millis(20) {
                std::hint::spin_loop();
            }
            tokio::time::sleep(Duration::from_millis(30)).await;
            tokio::task::yield_now().await;
            (busy_so_far() - before, t0.elapsed())
        });
        assert!(busy >= Duration::from_millis(20), "{busy:?}");
        assert!(
            busy < wall - Duration::from_millis(20),
            "{busy:?} of {wall:?}"
        );
    }
}
