//! Reading the client's ARP capture on the run's clock when the real-time clock jumps.
//!
//! tcpdump stamps each packet with the kernel's `CLOCK_REALTIME`; the testbed turns stamps
//! into run time (`CLOCK_MONOTONIC` since its epoch) by subtracting the wall time of its
//! epoch. A chaos run that steps the real-time clock (`Testbed::step_clock`) breaks that:
//! after a step back, one stamp can belong to before or after it. [`LineTimes`] notes when
//! each capture line was first seen on the run's clock (a thread tailing the file, tcpdump
//! in immediate mode, line-buffered); [`run_times`] (pure) then picks, for each stamp, the
//! clock segment whose reading lands nearest that sighting. It does not parse the lines
//! (`text::parse_arp_claim`) or step the clock (`faults::step_realtime`).

use std::io::Read;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Run time (seconds) of each stamp, `rel` being the stamps minus the epoch's wall time,
/// in capture order, and `seen` the run time each line was first seen (same order; may be
/// shorter when lines were not seen yet). `steps` are the clock steps in order: (run time
/// just before the step, seconds stepped). Without steps the stamps are the answer.
pub fn run_times(
    rel: impl IntoIterator<Item = f64>,
    seen: &[f64],
    steps: &[(f64, f64)],
) -> Vec<f64> {
    // Segment k runs from the k-th step (or the start) to the next, with the sum of the
    // steps before it added to the wall clock.
    let mut segs = vec![(f64::NEG_INFINITY, f64::INFINITY, 0.0)];
    let mut off = 0.0;
    for &(t, d) in steps {
        segs.last_mut().expect("first segment").1 = t;
        off += d;
        segs.push((t, f64::INFINITY, off));
    }
    const SLACK: f64 = 0.05;
    rel.into_iter()
        .enumerate()
        .map(|(i, w)| {
            if steps.is_empty() {
                return w;
            }
            // Not seen yet: written after the last sighting, so after the last step.
            let Some(&s) = seen.get(i) else {
                return w - off;
            };
            // A line is seen after its packet: a reading later than its sighting is not it.
            segs.iter()
                .map(|&(from, to, off)| (w - off, from, to))
                .filter(|&(t, from, to)| t >= from - SLACK && t <= to + SLACK && t <= s + SLACK)
                .map(|(t, ..)| t)
                .min_by(|a, b| (a - s).abs().total_cmp(&(b - s).abs()))
                .unwrap_or(s)
        })
        .collect()
}

/// A thread noting, on the run's clock, when each complete line of a growing file was
/// first seen (polled every 5 ms). Stops when dropped.
#[derive(Debug)]
pub struct LineTimes {
    seen: Arc<Mutex<Vec<Duration>>>,
    stop: Arc<AtomicBool>,
}

impl LineTimes {
    pub fn start(path: PathBuf, epoch: Instant) -> LineTimes {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (s, st) = (seen.clone(), stop.clone());
        std::thread::spawn(move || {
            // Only the bytes written since the last poll are read.
            let mut file: Option<std::fs::File> = None;
            let mut buf = [0u8; 4096];
            while !st.load(Ordering::Relaxed) {
                if file.is_none() {
                    file = std::fs::File::open(&path).ok();
                }
                let mut lines = 0;
                while let Some(Ok(n @ 1..)) = file.as_mut().map(|f| f.read(&mut buf)) {
                    lines += buf[..n].iter().filter(|b| **b == b'\n').count();
                }
                if lines > 0 {
                    let now = epoch.elapsed();
                    s.lock().unwrap().extend((0..lines).map(|_| now));
                }
                std::thread::sleep(Duration::from_millis(5));
            }
        });
        LineTimes { seen, stop }
    }

    /// When each line seen so far was first seen (seconds of run time), in file order.
    pub fn seen(&self) -> Vec<f64> {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .map(Duration::as_secs_f64)
            .collect()
    }
}

impl Drop for LineTimes {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::run_times;

    fn close(got: Vec<f64>, want: &[f64]) {
        assert_eq!(got.len(), want.len(), "{got:?}");
        for (g, w) in got.iter().zip(want) {
            assert!((g - w).abs() < 1e-9, "{got:?} vs {want:?}");
        }
    }

    #[test]
    fn without_steps_the_stamps_are_the_run_times() {
        assert_eq!(run_times([1.0, 2.5], &[9.0, 9.0], &[]), vec![1.0, 2.5]);
    }

    #[test]
    fn the_sighting_tells_which_side_of_a_step_a_stamp_is_on() {
        // +1 h at 10 s, −1 h at 20 s: a claim at 15 s carries the stamp 3615.
        let steps = [(10.0, 3600.0), (20.0, -3600.0)];
        close(
            run_times([5.0, 3615.0, 25.0], &[5.01, 15.02, 25.0], &steps),
            &[5.0, 15.0, 25.0],
        );
        // −30 s at 10 s, +30 s at 20 s: the stamp −17 is a claim at 13 s (the only
        // reading in its segment); the stamp 5 is 5 s (35 s is past the second step).
        let steps = [(10.0, -30.0), (20.0, 30.0)];
        close(
            run_times([-17.0, 5.0, 25.0], &[13.0, 5.0, 25.01], &steps),
            &[13.0, 5.0, 25.0],
        );
        // Back 1 s at 10.5 s: the stamp 10.4 twice, before the step and after it (11.4 s).
        let steps = [(10.5, -1.0)];
        close(
            run_times([10.4, 10.4], &[10.42, 11.45], &steps),
            &[10.4, 11.4],
        );
    }

    #[test]
    fn unseen_lines_are_after_the_last_step_and_impossible_readings_yield_the_sighting() {
        close(
            run_times([5.0, 75.0], &[5.0], &[(10.0, 60.0)]),
            &[5.0, 15.0],
        );
        // 40 s would be after the line was seen at 12 s: the sighting stands.
        close(
            run_times([40.0], &[12.0], &[(10.0, 60.0), (30.0, -60.0)]),
            &[12.0],
        );
    }
}
