//! Checks around cluster creation: `cpe preflight` before (ports free, interface
//! present, VIP unused, etcd reachable) and `cpe check` after (the endpoint answers, the
//! certificate names it). Each check returns pass / warn / fail with a reason and a fix.
