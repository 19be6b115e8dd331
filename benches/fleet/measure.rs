//! What the bench reads of processes: CPU time and resident memory from /proc, the peak of it
//! over a run, the agents' outage lines in their log, and stderr sent to that log.

use super::*;

/// The agents' outage lines in their log so far.
pub(crate) fn outages(log: &Path) -> usize {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    text.lines().filter(|l| l.starts_with("hutong agent") && l.contains("unreachable")).count()
}

/// CPU seconds (user and system) process `pid` ("self", or a number) has used.
pub(crate) fn cpu_s(pid: &str) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The fields after the command's closing parenthesis start at field 3 (proc(5)): utime is
    // field 14 and stime field 15.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let ticks: f64 = rest.split_whitespace().skip(11).take(2).filter_map(|f| f.parse::<f64>().ok()).sum();
    // SAFETY: sysconf reads a constant of the system; it has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    ticks / hz.max(1) as f64
}

/// Resident memory of process `pid` ("self", or a number), KiB.
pub(crate) fn rss_kib(pid: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// A process's peak resident memory, sampled every 100 ms on a thread of its own (a peak
/// during a push lasts a moment; a read at the end would miss it).
pub(crate) struct PeakRss {
    pub(crate) stop: Arc<AtomicBool>,
    pub(crate) peak: Arc<AtomicU64>,
    pub(crate) thread: Option<std::thread::JoinHandle<()>>,
}

impl PeakRss {
    pub(crate) fn start(pid: u32) -> PeakRss {
        let (stop, peak) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicU64::new(0)));
        let (s, p) = (stop.clone(), peak.clone());
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                p.fetch_max(rss_kib(&pid.to_string()), Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(100));
            }
        });
        PeakRss { stop, peak, thread: Some(thread) }
    }

    pub(crate) fn peak_kib(&self) -> u64 {
        self.peak.load(Ordering::Relaxed)
    }
}

impl Drop for PeakRss {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// This process's stderr, sent to a file while the agents run (each says one line per apply:
/// thousands per push) and put back on drop.
pub(crate) struct Stderr {
    pub(crate) saved: OwnedFd,
}

impl Stderr {
    pub(crate) fn to(path: &Path) -> Result<Stderr> {
        let file = std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
        let saved = nix::unistd::dup(std::io::stderr())?;
        nix::unistd::dup2_stderr(&file)?;
        Ok(Stderr { saved })
    }
}

impl Drop for Stderr {
    fn drop(&mut self) {
        let _ = nix::unistd::dup2_stderr(&self.saved);
    }
}
