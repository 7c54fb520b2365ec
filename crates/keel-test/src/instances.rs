//! Server instances of a test's own, for what the shared servers cannot show without changing
//! their settings (TLS is read at start-up): a PostgreSQL ([`PgInstance`]) or MariaDB
//! ([`MariaInstance`]) on a free loopback port with its data under a directory the caller
//! gives (the target dir), TLS on with a certificate from a [`TestCa`]. Each is stopped when
//! dropped, also when the test panics.
//!
//! Starting one takes seconds; tests that need one start it once and run all their cases on it.
//! PostgreSQL refuses to run as root, so `initdb` and `pg_ctl` run as the `postgres` user
//! (`runuser`), which must own the data directory.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};

/// A failure starting an instance: the command and what it said.
pub type InstanceError = String;

/// A certificate authority made for one test run, and what it signs.
pub struct TestCa {
    issuer: Issuer<'static, KeyPair>,
    /// The CA certificate (PEM): what clients trust.
    pub cert_pem: String,
}

/// A certificate and its private key, both PEM.
pub struct Signed {
    /// The certificate.
    pub cert_pem: String,
    /// The private key (PKCS#8).
    pub key_pem: String,
}

impl TestCa {
    /// A new CA named `name`.
    pub fn new(name: &str) -> Result<Self, InstanceError> {
        let key = KeyPair::generate().map_err(|e| e.to_string())?;
        let mut params = CertificateParams::new(Vec::new()).map_err(|e| e.to_string())?;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let cert = params.self_signed(&key).map_err(|e| e.to_string())?;
        Ok(TestCa { issuer: Issuer::new(params, key), cert_pem: cert.pem() })
    }

    /// A server certificate for these DNS names (or IP addresses), signed by this CA.
    pub fn server(&self, names: &[&str]) -> Result<Signed, InstanceError> {
        let names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
        self.sign(CertificateParams::new(names).map_err(|e| e.to_string())?, None)
    }

    /// A client certificate whose common name is `user` (PostgreSQL's `cert` authentication
    /// maps it to the role of that name).
    pub fn client(&self, user: &str) -> Result<Signed, InstanceError> {
        self.sign(CertificateParams::new(Vec::new()).map_err(|e| e.to_string())?, Some(user.to_owned()))
    }

    /// A client certificate for `user` with an RSA key made by the `openssl` command line: the
    /// MySQL driver reads only RSA keys in PKCS#1 form, which is what [`Signed::key_pem`] holds.
    pub fn rsa_client(&self, user: &str) -> Result<Signed, InstanceError> {
        let openssl = |args: &[&str], input: Option<&str>| -> Result<String, InstanceError> {
            use std::io::Write as _;
            let mut child = Command::new("openssl")
                .args(args)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .map_err(|e| format!("openssl: {e}"))?;
            if let (Some(text), Some(mut stdin)) = (input, child.stdin.take()) {
                stdin.write_all(text.as_bytes()).map_err(|e| e.to_string())?;
            }
            let out = child.wait_with_output().map_err(|e| e.to_string())?;
            if !out.status.success() {
                return Err(format!("openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr)));
            }
            String::from_utf8(out.stdout).map_err(|e| e.to_string())
        };
        let pkcs1 = openssl(&["genrsa", "-traditional", "2048"], None)?;
        let pkcs8 = openssl(&["pkcs8", "-topk8", "-nocrypt"], Some(&pkcs1))?;
        let key = KeyPair::from_pem(&pkcs8).map_err(|e| e.to_string())?;
        let mut params = CertificateParams::new(Vec::new()).map_err(|e| e.to_string())?;
        params.distinguished_name.push(DnType::CommonName, user);
        let cert = params.signed_by(&key, &self.issuer).map_err(|e| e.to_string())?;
        Ok(Signed { cert_pem: cert.pem(), key_pem: pkcs1 })
    }

    fn sign(&self, mut params: CertificateParams, cn: Option<String>) -> Result<Signed, InstanceError> {
        if let Some(cn) = cn {
            params.distinguished_name.push(DnType::CommonName, cn);
        }
        let key = KeyPair::generate().map_err(|e| e.to_string())?;
        let cert = params.signed_by(&key, &self.issuer).map_err(|e| e.to_string())?;
        Ok(Signed { cert_pem: cert.pem(), key_pem: key.serialize_pem() })
    }
}

/// A free TCP port on 127.0.0.1 (free when asked; the server binds it right after).
pub fn free_port() -> Result<u16, InstanceError> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    Ok(listener.local_addr().map_err(|e| e.to_string())?.port())
}

fn run(cmd: &mut Command) -> Result<(), InstanceError> {
    crate::cluster::run(cmd).map(drop).map_err(|e| e.to_string())
}

fn write(path: &Path, text: &str) -> Result<(), InstanceError> {
    std::fs::write(path, text).map_err(|e| format!("writing {}: {e}", path.display()))
}

/// The newest PostgreSQL server binaries on the machine (`/usr/lib/postgresql/<v>/bin`).
pub(crate) fn pg_bin() -> Result<PathBuf, InstanceError> {
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .map_err(|e| format!("no PostgreSQL server binaries in /usr/lib/postgresql: {e}"))?
        .filter_map(|entry| {
            let entry = entry.ok()?;
            let version: u32 = entry.file_name().to_str()?.parse().ok()?;
            let bin = entry.path().join("bin");
            bin.join("pg_ctl").exists().then_some((version, bin))
        })
        .collect();
    found.sort();
    found.pop().map(|(_, bin)| bin).ok_or_else(|| "no pg_ctl under /usr/lib/postgresql/*/bin".to_owned())
}

/// A PostgreSQL server of a test's own: superuser `root` (trust over TCP from 127.0.0.1),
/// TLS on with the given certificate, and role `certuser`, which must log in with a client
/// certificate (`hostssl … cert`). Stopped when dropped.
pub struct PgInstance {
    bin: PathBuf,
    dir: PathBuf,
    /// The port it listens on, at 127.0.0.1.
    pub port: u16,
}

impl PgInstance {
    /// Initialises and starts an instance in a new directory under `parent`, serving `server`
    /// and trusting `client_ca` for client certificates.
    pub fn start(parent: &Path, server: &Signed, client_ca: &TestCa) -> Result<Self, InstanceError> {
        let bin = pg_bin()?;
        let port = free_port()?;
        let dir = parent.join(format!("keel-pg-{}-{port}", std::process::id()));
        let data = dir.join("data");
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
        run(Command::new("chown").arg("postgres:").arg(&dir))?;
        let as_postgres = |tool: &str| {
            let mut cmd = Command::new("runuser");
            cmd.args(["-u", "postgres", "--"]).arg(bin.join(tool));
            cmd
        };
        run(as_postgres("initdb").arg("-D").arg(&data).args(["-U", "root", "--auth=trust", "-E", "UTF8"]))?;
        for (name, text) in [
            ("server.crt", server.cert_pem.as_str()),
            ("server.key", server.key_pem.as_str()),
            ("client_ca.crt", client_ca.cert_pem.as_str()),
        ] {
            write(&data.join(name), text)?;
        }
        let conf = format!(
            "listen_addresses = '127.0.0.1'\nport = {port}\nunix_socket_directories = '{}'\n\
             ssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\nssl_ca_file = 'client_ca.crt'\n\
             fsync = off\nmax_connections = 30\nshared_buffers = 16MB\n",
            dir.display()
        );
        let mut existing =
            std::fs::read_to_string(data.join("postgresql.conf")).map_err(|e| e.to_string())?;
        existing.push_str(&conf);
        write(&data.join("postgresql.conf"), &existing)?;
        write(
            &data.join("pg_hba.conf"),
            "local all all trust\nhostssl all certuser 127.0.0.1/32 cert\nhost all certuser 127.0.0.1/32 reject\nhost all all 127.0.0.1/32 trust\n",
        )?;
        run(Command::new("chown").arg("-R").arg("postgres:").arg(&dir))?;
        run(Command::new("chmod").arg("600").arg(data.join("server.key")))?;
        let instance = PgInstance { bin: bin.clone(), dir, port };
        run(as_postgres("pg_ctl")
            .args(["start", "-w", "-t", "60", "-D"])
            .arg(&data)
            .arg("-l")
            .arg(instance.dir.join("log")))
        .map_err(|e| format!("{e}\nlog: {}", instance.log()))?;
        let psql = instance.bin.join("psql");
        run(Command::new(psql).args([
            "-h",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-U",
            "root",
            "-d",
            "postgres",
            "-c",
            "CREATE ROLE certuser LOGIN",
            "-c",
            "CREATE DATABASE test",
        ]))?;
        Ok(instance)
    }

    /// The server's log so far (for failure messages).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("log")).unwrap_or_default()
    }
}

impl Drop for PgInstance {
    fn drop(&mut self) {
        let _ = Command::new("runuser")
            .args(["-u", "postgres", "--"])
            .arg(self.bin.join("pg_ctl"))
            .args(["stop", "-m", "immediate", "-D"])
            .arg(self.dir.join("data"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A MariaDB server of a test's own: `root` without a password, TLS on with the given
/// certificate, and user `certuser`, which must present a client certificate (`REQUIRE X509`).
/// Stopped when dropped.
pub struct MariaInstance {
    child: Child,
    dir: PathBuf,
    /// The port it listens on, at 127.0.0.1.
    pub port: u16,
}

impl MariaInstance {
    /// Initialises and starts an instance in a new directory under `parent`, serving `server`
    /// and trusting `client_ca` for client certificates.
    pub fn start(parent: &Path, server: &Signed, client_ca: &TestCa) -> Result<Self, InstanceError> {
        let port = free_port()?;
        let dir = parent.join(format!("keel-maria-{}-{port}", std::process::id()));
        let data = dir.join("data");
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
        for (name, text) in [
            ("server.crt", server.cert_pem.as_str()),
            ("server.key", server.key_pem.as_str()),
            ("client_ca.crt", client_ca.cert_pem.as_str()),
        ] {
            write(&dir.join(name), text)?;
        }
        run(Command::new("mariadb-install-db")
            .arg("--no-defaults")
            .arg(format!("--datadir={}", data.display()))
            .args(["--user=root", "--auth-root-authentication-method=normal", "--skip-test-db"]))?;
        let socket = dir.join("mysqld.sock");
        let log = dir.join("log");
        let log_file = std::fs::File::create(&log).map_err(|e| e.to_string())?;
        let child = Command::new("mariadbd")
            .arg("--no-defaults")
            .arg(format!("--datadir={}", data.display()))
            .arg(format!("--socket={}", socket.display()))
            .arg(format!("--pid-file={}", dir.join("pid").display()))
            .arg(format!("--port={port}"))
            .args([
                "--bind-address=127.0.0.1",
                "--user=root",
                "--skip-name-resolve",
                "--innodb-buffer-pool-size=16M",
            ])
            .arg(format!("--ssl-cert={}", dir.join("server.crt").display()))
            .arg(format!("--ssl-key={}", dir.join("server.key").display()))
            .arg(format!("--ssl-ca={}", dir.join("client_ca.crt").display()))
            .stdout(Stdio::null())
            .stderr(log_file)
            .spawn()
            .map_err(|e| format!("starting mariadbd: {e}"))?;
        let mut instance = MariaInstance { child, dir, port };
        let started = Instant::now();
        loop {
            let ready = Command::new("mariadb")
                .arg("--no-defaults")
                .arg(format!("--socket={}", socket.display()))
                .args(["-uroot", "-e", "CREATE USER IF NOT EXISTS root@'127.0.0.1'; \
                       GRANT ALL PRIVILEGES ON *.* TO root@'127.0.0.1' WITH GRANT OPTION; \
                       CREATE USER certuser@'%' REQUIRE X509; GRANT ALL PRIVILEGES ON test.* TO certuser@'%'; \
                       CREATE DATABASE test"])
                .output()
                .map_err(|e| e.to_string())?;
            if ready.status.success() {
                return Ok(instance);
            }
            if let Ok(Some(status)) = instance.child.try_wait() {
                return Err(format!("mariadbd exited ({status}): {}", instance.log()));
            }
            if started.elapsed() > Duration::from_secs(60) {
                return Err(format!(
                    "mariadbd did not become ready in 60 s: {}{}",
                    String::from_utf8_lossy(&ready.stderr),
                    instance.log()
                ));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// The server's log so far (for failure messages).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("log")).unwrap_or_default()
    }
}

impl Drop for MariaInstance {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
