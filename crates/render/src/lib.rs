//! Renders the artifacts that wire a control-plane endpoint into a cluster:
//! kubeadm `ClusterConfiguration`, Cluster API objects, the VIP agent static pod, and
//! systemd units. Pure: takes an [`cpe_config::Endpoint`], returns text. Never touches
//! the host or the cluster.
