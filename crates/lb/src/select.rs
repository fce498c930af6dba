//! Which backend gets a new connection: a pure function of a view of the backends.
//!
//! Least connections among `UP` backends (long-lived watches make round-robin drift: a
//! backend that came back late would keep few connections for hours). Ties are broken by
//! a rotating start index, so equal backends share new connections evenly. When no `UP`
//! backend is left, the last resort is any backend, not in maintenance, that still
//! accepted TCP the last time anyone tried: an etcd stall makes every `/readyz` fail, and
//! it must not take the whole endpoint down with it.
//!
//! It does not probe, lock or connect.

use cpe_health::State;

/// What selection needs to know about one backend.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct View {
    pub state: State,
    pub tcp_alive: bool,
    pub active: i64,
    /// Has an address (a name that does not resolve has none).
    pub addressable: bool,
}

/// The choice.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pick {
    /// An `UP` backend.
    Up(usize),
    /// No `UP` backend left: one that still accepts TCP.
    Fallback(usize),
    /// Nothing to send to.
    None,
}

/// Picks among `n` backends (`view(i)` for each), skipping those already `tried` for this
/// client connection; `start` rotates the tie-break.
pub fn pick(n: usize, view: impl Fn(usize) -> View, tried: &[usize], start: usize) -> Pick {
    let mut best_up: Option<(i64, usize)> = None;
    let mut best_fb: Option<(i64, usize)> = None;
    for k in 0..n {
        let i = (start + k) % n;
        if tried.contains(&i) {
            continue;
        }
        let v = view(i);
        if !v.addressable {
            continue;
        }
        if v.state == State::Up {
            if best_up.is_none_or(|(a, _)| v.active < a) {
                best_up = Some((v.active, i));
            }
        } else if v.tcp_alive
            && v.state != State::Maintenance
            && best_fb.is_none_or(|(a, _)| v.active < a)
        {
            best_fb = Some((v.active, i));
        }
    }
    match (best_up, best_fb) {
        (Some((_, i)), _) => Pick::Up(i),
        (None, Some((_, i))) => Pick::Fallback(i),
        (None, None) => Pick::None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(state: State, active: i64) -> View {
        View {
            state,
            tcp_alive: state != State::Down,
            active,
            addressable: true,
        }
    }

    fn run(views: &[View], tried: &[usize], start: usize) -> Pick {
        pick(views.len(), |i| views[i], tried, start)
    }

    #[test]
    fn least_connections_among_up() {
        let b = [v(State::Up, 5), v(State::Up, 2), v(State::Up, 9)];
        assert_eq!(run(&b, &[], 0), Pick::Up(1));
        assert_eq!(run(&b, &[1], 0), Pick::Up(0));
        assert_eq!(run(&b, &[0, 1], 0), Pick::Up(2));
    }

    #[test]
    fn only_up_backends_get_connections_while_any_is_up() {
        for other in [
            State::Draining,
            State::Recovering,
            State::Suspect,
            State::Down,
            State::Maintenance,
        ] {
            let b = [v(other, 0), v(State::Up, 100)];
            assert_eq!(run(&b, &[], 0), Pick::Up(1), "{other:?}");
        }
    }

    #[test]
    fn ties_rotate_with_start() {
        let b = [v(State::Up, 0), v(State::Up, 0), v(State::Up, 0)];
        let picks: Vec<Pick> = (0..3).map(|s| run(&b, &[], s)).collect();
        assert_eq!(picks, [Pick::Up(0), Pick::Up(1), Pick::Up(2)]);
    }

    #[test]
    fn fallback_to_tcp_alive_when_none_is_up() {
        let mut dead = v(State::Down, 0);
        dead.tcp_alive = false;
        let mut maint = v(State::Maintenance, 0);
        maint.tcp_alive = true;
        let b = [dead, v(State::Draining, 3), maint, v(State::Down, 1)];
        // `v(Down)` here is tcp-alive only if set: make index 3 alive.
        let mut b = b;
        b[3].tcp_alive = true;
        assert_eq!(run(&b, &[], 0), Pick::Fallback(3));
        assert_eq!(run(&b, &[3], 0), Pick::Fallback(1));
        assert_eq!(
            run(&b, &[1, 3], 0),
            Pick::None,
            "never maintenance, never dead"
        );
        // An UP backend, once tried, does not hide the fallback.
        let b = [v(State::Up, 0), v(State::Draining, 0)];
        assert_eq!(run(&b, &[0], 0), Pick::Fallback(1));
    }

    #[test]
    fn unaddressable_and_empty() {
        let mut b = [v(State::Up, 0)];
        b[0].addressable = false;
        assert_eq!(run(&b, &[], 0), Pick::None);
        assert_eq!(run(&[], &[], 7), Pick::None);
    }
}
