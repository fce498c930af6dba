//! The demo's failure-injection script: what happens to which stand-in server, and when.
//! A plain list of timed steps, so the view can show what is next and the summary can
//! pair each step with what the load balancer did about it. No I/O here.

use std::time::Duration;

/// What a step does to a backend (index into the demo's backends).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// The real shutdown sequence: `/readyz` 503 for the shutdown delay while still
    /// serving, then the listener closes and connections are asked to finish.
    Graceful(usize),
    /// A crash: listener and every connection dropped at once.
    Kill(usize),
    /// A fresh server on the same address.
    Restart(usize),
    /// Traffic stops, the summary is printed.
    End,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Step {
    /// Since traffic started.
    pub at: Duration,
    pub action: Action,
}

/// How long each phase lasts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pace {
    /// Traffic on all three before the first failure.
    pub warmup: Duration,
    /// From a stop or a kill to the restart.
    pub down: Duration,
    /// From a restart to the next failure (or the end).
    pub up: Duration,
    /// The stand-ins' shutdown delay (`/readyz` 503 while still serving).
    pub shutdown_delay: Duration,
    /// How long connections get to finish after the listener closed.
    pub shutdown_grace: Duration,
}

impl Pace {
    /// About 30 s of traffic: long enough to watch, well under a minute.
    pub fn normal() -> Pace {
        Pace {
            warmup: Duration::from_secs(4),
            down: Duration::from_secs(6),
            up: Duration::from_secs(5),
            shutdown_delay: Duration::from_secs(2),
            shutdown_grace: Duration::from_secs(1),
        }
    }

    /// About 13 s, for tests and a quick look.
    pub fn quick() -> Pace {
        Pace {
            warmup: Duration::from_millis(2000),
            down: Duration::from_millis(3000),
            up: Duration::from_millis(2500),
            shutdown_delay: Duration::from_millis(1000),
            shutdown_grace: Duration::from_millis(500),
        }
    }
}

/// Stop `graceful` gracefully and bring it back, then kill `killed` and bring it back.
pub fn timeline(pace: Pace, graceful: usize, killed: usize) -> Vec<Step> {
    let mut steps = Vec::new();
    let mut t = pace.warmup;
    for (stop, target) in [
        (Action::Graceful(graceful), graceful),
        (Action::Kill(killed), killed),
    ] {
        steps.push(Step {
            at: t,
            action: stop,
        });
        t += pace.down;
        steps.push(Step {
            at: t,
            action: Action::Restart(target),
        });
        t += pace.up;
    }
    steps.push(Step {
        at: t,
        action: Action::End,
    });
    steps
}

/// Points the rest of the script at other servers: the graceful stop and its restart at
/// `graceful`, the kill and its restart at `killed`. The demo calls it when the graceful
/// stop is due, to stop the server carrying the watch (so the view shows the watch ending
/// cleanly and resuming elsewhere) and to kill another one.
pub fn retarget(steps: &mut [Step], graceful: usize, killed: usize) {
    let mut restarts_seen = 0;
    for step in steps.iter_mut() {
        step.action = match step.action {
            Action::Graceful(_) => Action::Graceful(graceful),
            Action::Kill(_) => Action::Kill(killed),
            // The first restart brings back the stopped server, the second the killed one.
            Action::Restart(_) => {
                restarts_seen += 1;
                Action::Restart(if restarts_seen == 1 { graceful } else { killed })
            }
            Action::End => Action::End,
        };
    }
}

/// How a step reads in the view and the logs.
pub fn describe(action: Action, names: &[String], pace: Pace) -> String {
    let name = |i: usize| names.get(i).map(String::as_str).unwrap_or("?");
    match action {
        Action::Graceful(i) => format!(
            "stop {} gracefully (/readyz 503 for {}, then the listener closes)",
            name(i),
            cpe_config::duration::format(pace.shutdown_delay)
        ),
        Action::Kill(i) => format!("kill {} (crash: listener and connections dropped)", name(i)),
        Action::Restart(i) => format!("restart {}", name(i)),
        Action::End => "end: stop traffic, print the summary".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_timeline_stops_kills_and_restarts_in_order_and_ends_last() {
        for pace in [Pace::normal(), Pace::quick()] {
            let steps = timeline(pace, 0, 1);
            let actions: Vec<Action> = steps.iter().map(|s| s.action).collect();
            assert_eq!(
                actions,
                vec![
                    Action::Graceful(0),
                    Action::Restart(0),
                    Action::Kill(1),
                    Action::Restart(1),
                    Action::End
                ]
            );
            assert!(steps.windows(2).all(|w| w[0].at < w[1].at));
            // A graceful stop must be over (delay + grace) before its restart.
            assert!(steps[1].at - steps[0].at > pace.shutdown_delay + pace.shutdown_grace);
            assert!(
                steps[4].at < Duration::from_secs(45),
                "the demo must stay under a minute"
            );
        }
    }

    #[test]
    fn retargeting_keeps_times_and_pairs_each_restart_with_its_stop() {
        let mut steps = timeline(Pace::quick(), 0, 1);
        let times: Vec<Duration> = steps.iter().map(|s| s.at).collect();
        retarget(&mut steps, 2, 0);
        let actions: Vec<Action> = steps.iter().map(|s| s.action).collect();
        assert_eq!(
            actions,
            vec![
                Action::Graceful(2),
                Action::Restart(2),
                Action::Kill(0),
                Action::Restart(0),
                Action::End
            ]
        );
        assert_eq!(times, steps.iter().map(|s| s.at).collect::<Vec<_>>());
    }

    #[test]
    fn steps_name_the_backend() {
        let names = vec!["cp1".to_string(), "cp2".to_string()];
        let d = describe(Action::Graceful(0), &names, Pace::quick());
        assert!(d.contains("cp1") && d.contains("1s"), "{d}");
        assert!(describe(Action::Kill(1), &names, Pace::quick()).starts_with("kill cp2"));
    }
}
