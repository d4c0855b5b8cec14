//! A 3-node Garage cluster on loopback: three `garage server` processes ([`Garage`] nodes, each
//! with its own ports, folder and log), one `rpc_secret`, one zone each (`dc1`–`dc3`),
//! `replication_factor = 3`. Every node serves the S3 API and the website endpoint for every
//! bucket; one test key works on all of them.
//!
//! Nodes can be killed, restarted and paused (SIGSTOP). A node that comes back answers RPC at
//! once but serves reads only seconds later; [`GarageCluster::wait_serving`] waits for the real
//! thing: a healthy cluster from that node's view and a probe object read through both of its
//! APIs.

use super::garage::{self, Garage};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

/// The nodes of a cluster.
pub const NODES: usize = 3;

/// Bucket and key of the object [`GarageCluster::wait_serving`] reads.
const PROBE: (&str, &str) = ("probe", "ready.txt");
const PROBE_BYTES: &[u8] = b"ready\n";

/// Three running Garage nodes; all killed on drop.
pub struct GarageCluster {
    /// The nodes; `nodes[i]` is in zone `dc{i+1}`.
    pub nodes: Vec<Garage>,
    /// `<node id>@127.0.0.1:<rpc port>` of each node.
    addresses: Vec<String>,
}

/// A node stopped with SIGSTOP; continued (SIGCONT) on drop.
pub struct Paused {
    pid: u32,
}

impl Drop for Paused {
    fn drop(&mut self) {
        // No panic here (it may run while a failed test unwinds); a lost SIGCONT shows as
        // the node's reads timing out in the next wait.
        let _ = signal("CONT", self.pid);
    }
}

impl GarageCluster {
    /// Starts the cluster, or reports Garage missing via [`super::missing`] and returns `None`.
    pub fn try_start() -> Option<GarageCluster> {
        let Some(binary) = Garage::binary() else {
            super::missing("Garage 2.x", garage::HOW_TO_INSTALL);
            return None;
        };
        Some(Self::start_with(&binary))
    }

    fn start_with(binary: &Path) -> GarageCluster {
        let start = Instant::now();
        let seed = format!("{}{:?}", std::process::id(), Instant::now());
        let secret = super::sha256_hex(seed.as_bytes());
        let mut nodes: Vec<Garage> = (0..NODES).map(|_| member(binary, &secret)).collect();
        let ids: Vec<String> = nodes.iter().map(Garage::node_id).collect();
        let addresses: Vec<String> = (nodes.iter().zip(&ids))
            .map(|(node, id)| format!("{id}@127.0.0.1:{}", node.rpc_port))
            .collect();
        let first = &nodes[0];
        for address in &addresses[1..] {
            first.cli_ok(&["node", "connect", address]);
        }
        for (zone, id) in ids.iter().enumerate() {
            let zone = format!("dc{}", zone + 1);
            first.cli_ok(&["layout", "assign", "-z", &zone, "-c", "1G", id]);
        }
        first.cli_ok(&["layout", "apply", "--version", "1"]);
        nodes[0].create_key();
        let (key_id, key_secret) = (nodes[0].key_id.clone(), nodes[0].secret.clone());
        for node in &mut nodes {
            node.key_id.clone_from(&key_id);
            node.secret.clone_from(&key_secret);
            node.wait_for_apis();
        }
        let cluster = GarageCluster { nodes, addresses };
        cluster.create_bucket(PROBE.0);
        cluster.nodes[0].s3_put(PROBE.0, PROBE.1, PROBE_BYTES, "text/plain");
        for i in 0..NODES {
            cluster.wait_serving(i);
        }
        eprintln!("garage cluster: serving after {:.1?}", start.elapsed());
        cluster
    }

    /// Node `i`.
    pub fn node(&self, i: usize) -> &Garage {
        &self.nodes[i]
    }

    /// Creates `name` with website access (through node 0) and waits until every node's S3
    /// API lists it.
    pub fn create_bucket(&self, name: &str) {
        self.nodes[0].create_bucket(name);
        for node in &self.nodes[1..] {
            wait_for(&format!("bucket {name} on every node"), || {
                let s3 = node.s3();
                let (status, _, _) = s3.request("GET", name, "", &[("list-type", "2")], b"", &[]);
                status == 200
            });
        }
    }

    /// Kills node `i` (SIGKILL): its data stays for [`GarageCluster::restart`].
    pub fn kill(&mut self, i: usize) {
        self.nodes[i].kill();
    }

    /// Starts node `i` again and waits until it serves reads ([`GarageCluster::wait_serving`]).
    pub fn restart(&mut self, i: usize) {
        let start = Instant::now();
        self.nodes[i].restart();
        let rpc = start.elapsed();
        // A restarted node knows only itself, and its peers count it down, until their next
        // reconnection round (10-30 s): both sides connect now, as an operator's `garage node
        // connect` would.
        for j in (0..NODES).filter(|&j| j != i && self.nodes[j].pid().is_some()) {
            self.nodes[i].cli_ok(&["node", "connect", &self.addresses[j]]);
            self.nodes[j].cli_ok(&["node", "connect", &self.addresses[i]]);
        }
        for j in (0..NODES).filter(|&j| self.nodes[j].pid().is_some()) {
            self.wait_serving(j);
        }
        eprintln!(
            "garage node {i}: RPC after {rpc:.1?}, serving reads after {:.1?}",
            start.elapsed()
        );
    }

    /// Stops node `i` with SIGSTOP until the returned guard is dropped.
    pub fn pause(&self, i: usize) -> Paused {
        let pid = self.nodes[i].pid().expect("the node is not running");
        assert!(signal("STOP", pid), "kill -STOP {pid} failed");
        Paused { pid }
    }

    /// Waits until node `i` sees all nodes up with every partition fully available
    /// (`GetClusterHealth`) and serves the probe object through its S3 API and website.
    pub fn wait_serving(&self, i: usize) {
        let node = &self.nodes[i];
        wait_for(&format!("node {i} healthy"), || {
            let health = node
                .cli()
                .args(["json-api", "GetClusterHealth"])
                .output()
                .ok()
                .filter(|o| o.status.success())
                .and_then(|o| serde_json::from_slice::<serde_json::Value>(&o.stdout).ok());
            health.is_some_and(|h| {
                h["status"] == "healthy"
                    && h["connectedNodes"] == NODES
                    && h["storageNodesUp"] == NODES
            })
        });
        wait_for(&format!("node {i} serving reads"), || {
            let (s3, _, bytes) = node.s3_get(PROBE.0, PROBE.1);
            let (web, _, page) = node.web_get(PROBE.0, &format!("/{}", PROBE.1));
            s3 == 200 && bytes == PROBE_BYTES && web == 200 && page == PROBE_BYTES
        });
    }
}

/// Starts one node of the cluster (replication 3, the shared secret), retrying with new ports
/// if one was taken meanwhile; RPC answers when it returns.
fn member(binary: &Path, secret: &str) -> Garage {
    for attempt in 1..=3 {
        let mut node = Garage::spawn(binary, NODES as u8, Some(secret));
        if node.wait_for_rpc() {
            return node;
        }
        eprintln!(
            "garage node attempt {attempt} exited early:\n{}",
            node.log_text()
        );
    }
    panic!("a Garage node did not start in 3 attempts (see the logs above)");
}

/// Polls `ready` every 200 ms for up to 60 s; panics naming `what` after that.
fn wait_for(what: &str, mut ready: impl FnMut() -> bool) {
    let start = Instant::now();
    while !ready() {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "{what}: not after 60 s"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// `kill -<name> <pid>`; true if it was delivered.
fn signal(name: &str, pid: u32) -> bool {
    let status = Command::new("kill")
        .arg(format!("-{name}"))
        .arg(pid.to_string())
        .status();
    status.is_ok_and(|s| s.success())
}
