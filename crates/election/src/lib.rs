//! VIP leader election on etcd v3: leases (grant, keep-alive, revoke) and the election
//! API (campaign, leader, resign), spoken over etcd's JSON gateway (`/v3/...`) with hyper,
//! so that building cpe needs no `protoc`. No home-made consensus: etcd decides who leads.
//! It does not decide when to campaign or resign; that is the VIP state machine.
