//! A TCP proxy in front of a database server that fault tests control: it cuts every open
//! connection (as a crash or restart would), refuses new ones, or drops the connection around
//! the next `COMMIT`, so tests cut connections without touching the real server or other tests.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use std::sync::{Arc, PoisonError};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// What the proxy does with the next client chunk containing `COMMIT`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommitFault {
    /// Pass everything through.
    None,
    /// Close the connection without forwarding the COMMIT: the server rolls back.
    DropBeforeCommit,
    /// Forward the COMMIT, then close before the reply arrives: the server commits.
    DropAfterCommit,
}

struct ProxyState {
    target: SocketAddr,
    /// Bumped to cut every open connection.
    generation: watch::Sender<u64>,
    accepting: AtomicBool,
    commit_fault: std::sync::Mutex<CommitFault>,
    faults_injected: AtomicU64,
}

/// A TCP proxy in front of a database server, bound to `127.0.0.1:0`.
pub struct Proxy {
    addr: SocketAddr,
    state: Arc<ProxyState>,
    task: tokio::task::JoinHandle<()>,
}

impl Proxy {
    /// Starts a proxy forwarding to `target`.
    ///
    /// # Panics
    /// When no loopback port can be bound (the test cannot run).
    pub async fn start(target: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("binding a free loopback port");
        let addr = listener.local_addr().expect("a bound listener has an address");
        let state = Arc::new(ProxyState {
            target,
            generation: watch::channel(0).0,
            accepting: AtomicBool::new(true),
            commit_fault: std::sync::Mutex::new(CommitFault::None),
            faults_injected: AtomicU64::new(0),
        });
        let s = Arc::clone(&state);
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                if !s.accepting.load(SeqCst) {
                    drop(client);
                    continue;
                }
                tokio::spawn(pipe(Arc::clone(&s), client));
            }
        });
        Proxy { addr, state, task }
    }

    /// The proxy's address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `url` with host and port replaced by the proxy's, and TLS off (`sslmode=disable`,
    /// `ssl-mode=DISABLED`): the proxy finds `COMMIT` by reading the traffic, and keel's default
    /// `prefer` would encrypt it on a server with TLS.
    ///
    /// # Panics
    /// When `url` is not a server URL (`postgres://…`, `mysql://…`).
    pub fn url_for(&self, url: &str) -> String {
        let mut u = url::Url::parse(url).expect("a server URL");
        u.set_host(Some("127.0.0.1")).expect("a server URL takes a host");
        u.set_port(Some(self.addr.port())).expect("a server URL takes a port");
        let tls_param = if u.scheme().starts_with("postgres") {
            ("sslmode", "disable")
        } else {
            ("ssl-mode", "DISABLED")
        };
        let kept: Vec<(String, String)> = u
            .query_pairs()
            .filter(|(k, _)| k != tls_param.0)
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        u.query_pairs_mut().clear().extend_pairs(kept).append_pair(tls_param.0, tls_param.1);
        if matches!(u.scheme(), "mysql" | "mariadb") {
            // mysql_async otherwise switches a loopback TCP connection to the server's Unix
            // socket, around the proxy.
            u.query_pairs_mut().append_pair("prefer_socket", "false");
        }
        u.to_string()
    }

    /// Closes every open connection (as a server crash or restart would).
    pub fn cut_all(&self) {
        self.state.generation.send_modify(|g| *g += 1);
    }

    /// Refuses (closes at once) new connections while `false`.
    pub fn set_accepting(&self, accepting: bool) {
        self.state.accepting.store(accepting, SeqCst);
    }

    /// Arms a fault for the next COMMIT that passes through.
    pub fn fault_next_commit(&self, fault: CommitFault) {
        *self.state.commit_fault.lock().unwrap_or_else(PoisonError::into_inner) = fault;
    }

    /// How many COMMIT faults were injected.
    pub fn faults_injected(&self) -> u64 {
        self.state.faults_injected.load(SeqCst)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.cut_all();
        self.task.abort();
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// A COMMIT statement on the wire: PostgreSQL's simple query (`Q…COMMIT\0`) or MySQL's
/// COM_QUERY (`\x03COMMIT`). Matching the framing, not just the word, keeps a database or
/// column named `…commit…` from tripping the fault.
fn is_commit(chunk: &[u8]) -> bool {
    contains(chunk, b"COMMIT\0") || contains(chunk, b"\x03COMMIT")
}

async fn pipe(state: Arc<ProxyState>, mut client: TcpStream) {
    let Ok(mut server) = TcpStream::connect(state.target).await else { return };
    let mut cut = state.generation.subscribe();
    let (mut cr, mut cw) = client.split();
    let (mut sr, mut sw) = server.split();
    let mut up = vec![0u8; 64 * 1024];
    let mut down = vec![0u8; 64 * 1024];
    loop {
        tokio::select! {
            _ = cut.changed() => return,
            n = cr.read(&mut up) => {
                let Ok(n) = n else { return };
                if n == 0 { return; }
                let chunk = &up[..n];
                if is_commit(chunk) {
                    let fault = std::mem::replace(
                        &mut *state.commit_fault.lock().unwrap_or_else(PoisonError::into_inner),
                        CommitFault::None,
                    );
                    match fault {
                        CommitFault::None => {}
                        CommitFault::DropBeforeCommit => {
                            state.faults_injected.fetch_add(1, SeqCst);
                            return;
                        }
                        CommitFault::DropAfterCommit => {
                            state.faults_injected.fetch_add(1, SeqCst);
                            let _ = sw.write_all(chunk).await;
                            let _ = sw.flush().await;
                            // Give the server time to commit, then vanish before the reply.
                            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                            return;
                        }
                    }
                }
                if sw.write_all(chunk).await.is_err() { return; }
            }
            n = sr.read(&mut down) => {
                let Ok(n) = n else { return };
                if n == 0 { return; }
                if cw.write_all(&down[..n]).await.is_err() { return; }
            }
        }
    }
}

/// The `host:port` a server URL points at.
///
/// # Panics
/// When `url` is not a server URL with a host that resolves.
pub fn server_addr(url: &str) -> SocketAddr {
    use std::net::ToSocketAddrs;
    let u = url::Url::parse(url).expect("a server URL");
    (
        u.host_str().expect("a server URL has a host"),
        u.port_or_known_default().unwrap_or(match u.scheme() {
            "mysql" | "mariadb" => 3306,
            _ => 5432,
        }),
    )
        .to_socket_addrs()
        .ok()
        .and_then(|mut addrs| addrs.next())
        .expect("the server host resolves")
}
