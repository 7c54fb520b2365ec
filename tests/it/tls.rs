//! TLS and the connection forms people paste: `verify-full` against instances of the tests'
//! own (a CA and server certificate made here), the failures a user meets (unknown issuer,
//! wrong host name, a server without TLS) each with its own message, client certificates,
//! `sslmode=require` against the machine's PostgreSQL, and Unix sockets.
//!
//! One test per backend starts one instance and runs every case on it in turn: starting a
//! server takes seconds, and nextest runs each test in a process of its own.

use std::path::{Path, PathBuf};
use std::time::Duration;

use diesel::QueryableByName;
use diesel_async::RunQueryDsl;
use keel_pool::{Backend, Config, ErrorKind, Pool, with_conn};
use keel_test::instances::{MariaInstance, PgInstance, TestCa};

/// Certificates for one run: `ca` signs the servers' certificates (for `localhost`) and the
/// client's (`certuser`); `other` is a CA nobody uses.
struct Pki {
    dir: PathBuf,
    ca: TestCa,
}

impl Pki {
    fn new(name: &str) -> Pki {
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("keel-tls-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let ca = TestCa::new("keel test CA").unwrap();
        let other = TestCa::new("someone else's CA").unwrap();
        let client = ca.client("certuser").unwrap();
        let rsa = ca.rsa_client("certuser").unwrap();
        for (file, text) in [
            ("rsa-client.crt", &rsa.cert_pem),
            ("rsa-client.key", &rsa.key_pem),
            ("ca.pem", &ca.cert_pem),
            ("other-ca.pem", &other.cert_pem),
            ("client.crt", &client.cert_pem),
            ("client.key", &client.key_pem),
        ] {
            std::fs::write(dir.join(file), text).unwrap();
        }
        Pki { dir, ca }
    }

    fn path(&self, file: &str) -> String {
        self.dir.join(file).display().to_string()
    }
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn instance_parent() -> &'static Path {
    Path::new(env!("CARGO_TARGET_TMPDIR"))
}

/// The instance, or `None` (printed as a skip) when it cannot start on a machine that does not
/// require `backend` (`KEEL_REQUIRE_BACKENDS`, set in CI, turns that into a failure).
fn started<T>(backend: Backend, instance: Result<T, String>) -> Option<T> {
    match instance {
        Ok(instance) => Some(instance),
        Err(e) if !keel_test::required_backends().contains(&backend) => {
            eprintln!("SKIPPED: cannot start a {backend} instance of the test's own: {e}");
            None
        }
        Err(e) => panic!("{e}"),
    }
}

async fn connect(url: &str) -> Result<Pool, keel_pool::Error> {
    Pool::connect(Config::new(url)?.max_size(2).connect_timeout(Duration::from_secs(10))).await
}

/// Asserts that `url` fails with a TLS error whose message contains `reason`.
async fn assert_tls_failure(url: &str, reason: &str) {
    let err = connect(url).await.err().unwrap_or_else(|| panic!("{url} connected; expected: {reason}"));
    let text = err.to_string();
    assert_eq!(err.kind(), ErrorKind::Tls, "{url}: {text}");
    assert!(text.contains(reason), "{url}: expected {reason:?} in: {text}");
    assert!(!err.is_transient(), "a TLS failure is not retried: {text}");
}

#[derive(QueryableByName)]
struct Flag {
    #[diesel(sql_type = diesel::sql_types::Bool)]
    on: bool,
}

/// True when this session is encrypted, as PostgreSQL's `pg_stat_ssl` says.
async fn pg_session_encrypted(pool: &Pool) -> bool {
    let mut conn = pool.get().await.unwrap();
    let flag: Flag = with_conn!(&mut conn, |c| {
        diesel::sql_query("SELECT ssl AS on FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
            .get_result(c)
            .await
    })
    .unwrap();
    flag.on
}

#[derive(QueryableByName)]
struct Status {
    #[diesel(sql_type = diesel::sql_types::Text, column_name = "Value")]
    value: String,
}

/// This session's cipher, as MariaDB's `Ssl_cipher` says (empty: plain text).
async fn mysql_cipher(pool: &Pool) -> String {
    let mut conn = pool.get().await.unwrap();
    let status: Status = with_conn!(&mut conn, |c| {
        diesel::sql_query("SHOW SESSION STATUS LIKE 'Ssl_cipher'").get_result(c).await
    })
    .unwrap();
    status.value
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_on_a_postgres_instance_of_our_own() {
    let pki = Pki::new("pg");
    let server = pki.ca.server(&["localhost"]).unwrap();
    let Some(pg) = started(Backend::Postgres, PgInstance::start(instance_parent(), &server, &pki.ca)) else {
        return;
    };
    let port = pg.port;
    let (ca, other) = (pki.path("ca.pem"), pki.path("other-ca.pem"));

    // verify-full by the name in the certificate: encrypted, on every kind of session keel opens.
    let url = format!("postgres://root@localhost:{port}/test?sslmode=verify-full&sslrootcert={ca}");
    let pool = connect(&url).await.unwrap_or_else(|e| panic!("{e}\n{}", pg.log()));
    assert!(pg_session_encrypted(&pool).await, "pg_stat_ssl says the pool's session is encrypted");
    let read: i32 = keel_pool::with_read!(&pool, |c| {
        diesel::select(diesel::dsl::sql::<diesel::sql_types::Integer>("1")).get_result(c).await
    })
    .unwrap();
    assert_eq!(read, 1);
    let copy_client = pool.postgres_client().await.unwrap();
    let row = copy_client
        .query_one(
            "SELECT count(*) FILTER (WHERE NOT s.ssl), count(*) FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) \
             WHERE a.application_name = 'keel'",
            &[],
        )
        .await
        .unwrap();
    let (plain, all): (i64, i64) = (row.get(0), row.get(1));
    assert_eq!(plain, 0, "every keel session (pool, shared read session, COPY client) is encrypted");
    assert!(all >= 3, "the pool's, the read session's and the COPY client's sessions are there: {all}");
    drop(copy_client);
    pool.close(Duration::from_secs(5)).await;

    // The failures, each with its own message.
    assert_tls_failure(
        &format!("postgres://root@localhost:{port}/test?sslmode=verify-full&sslrootcert={other}"),
        "certificate signed by an unknown issuer",
    )
    .await;
    assert_tls_failure(
        &format!("postgres://root@127.0.0.1:{port}/test?sslmode=verify-full&sslrootcert={ca}"),
        "certificate is not valid for host 127.0.0.1",
    )
    .await;
    assert_tls_failure(
        &format!("postgres://root@127.0.0.1:{port}/test?sslmode=verify-ca&sslrootcert={other}"),
        "certificate signed by an unknown issuer",
    )
    .await;
    // `require` with a root given checks the issuer, as libpq does.
    assert_tls_failure(
        &format!("postgres://root@127.0.0.1:{port}/test?sslmode=require&sslrootcert={other}"),
        "certificate signed by an unknown issuer",
    )
    .await;

    // verify-ca checks the issuer only; require (no root given) only encrypts.
    for url in [
        format!("postgres://root@127.0.0.1:{port}/test?sslmode=verify-ca&sslrootcert={ca}"),
        format!("postgres://root@127.0.0.1:{port}/test?sslmode=require"),
        format!("postgres://root@127.0.0.1:{port}/test"),
    ] {
        let pool = connect(&url).await.unwrap_or_else(|e| panic!("{url}: {e}"));
        assert!(pg_session_encrypted(&pool).await, "{url}");
        pool.close(Duration::from_secs(5)).await;
    }

    // A client certificate: `certuser` may only log in with one (pg_hba `cert`).
    let (cert, key) = (pki.path("client.crt"), pki.path("client.key"));
    let with_cert = format!(
        "postgres://certuser@localhost:{port}/test?sslmode=verify-full&sslrootcert={ca}&sslcert={cert}&sslkey={key}"
    );
    let pool = connect(&with_cert).await.unwrap_or_else(|e| panic!("{e}\n{}", pg.log()));
    assert!(pg_session_encrypted(&pool).await);
    pool.close(Duration::from_secs(5)).await;
    let without = format!("postgres://certuser@localhost:{port}/test?sslmode=verify-full&sslrootcert={ca}");
    let err = connect(&without).await.expect_err("certuser needs a client certificate");
    assert!(err.to_string().contains("certificate"), "{err}");
    // The same through Config, not the URL.
    let config = Config::new(&format!("postgres://certuser@localhost:{port}/test"))
        .unwrap()
        .ssl_mode(keel_pool::SslMode::VerifyFull)
        .ssl_root_cert(&ca)
        .ssl_client_cert(&cert, &key)
        .max_size(1);
    Pool::connect(config).await.unwrap().close(Duration::from_secs(5)).await;

    // Our instance (never the shared server) turns TLS off: `require` must not fall back.
    let admin = connect(&format!("postgres://root@127.0.0.1:{port}/test?sslmode=disable")).await.unwrap();
    keel_test::exec_on(&admin, "ALTER SYSTEM SET ssl = off").await.unwrap();
    keel_test::exec_on(&admin, "SELECT pg_reload_conf()").await.unwrap();
    admin.close(Duration::from_secs(5)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    for mode in ["require", "verify-ca", "verify-full"] {
        assert_tls_failure(
            &format!("postgres://root@localhost:{port}/test?sslmode={mode}&sslrootcert={ca}"),
            &format!("the server does not support TLS (sslmode={mode})"),
        )
        .await;
    }
    let plain = connect(&format!("postgres://root@127.0.0.1:{port}/test?sslmode=prefer")).await.unwrap();
    assert!(!pg_session_encrypted(&plain).await, "prefer goes on in plain text when the server has no TLS");
    plain.close(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_on_a_mariadb_instance_of_our_own() {
    let pki = Pki::new("maria");
    let server = pki.ca.server(&["localhost"]).unwrap();
    let Some(maria) = started(Backend::Mysql, MariaInstance::start(instance_parent(), &server, &pki.ca))
    else {
        return;
    };
    let port = maria.port;
    let (ca, other) = (pki.path("ca.pem"), pki.path("other-ca.pem"));

    let url = format!("mysql://root@localhost:{port}/test?ssl-mode=VERIFY_IDENTITY&ssl-ca={ca}");
    let pool = connect(&url).await.unwrap_or_else(|e| panic!("{e}\n{}", maria.log()));
    assert!(!mysql_cipher(&pool).await.is_empty(), "Ssl_cipher says the session is encrypted");
    pool.close(Duration::from_secs(5)).await;

    assert_tls_failure(
        &format!("mysql://root@localhost:{port}/test?ssl-mode=VERIFY_IDENTITY&ssl-ca={other}"),
        "certificate signed by an unknown issuer",
    )
    .await;
    assert_tls_failure(
        &format!("mysql://root@127.0.0.1:{port}/test?ssl-mode=VERIFY_IDENTITY&ssl-ca={ca}"),
        "certificate is not valid for host 127.0.0.1",
    )
    .await;
    assert_tls_failure(
        &format!("mysql://root@127.0.0.1:{port}/test?ssl-mode=VERIFY_CA&ssl-ca={other}"),
        "certificate signed by an unknown issuer",
    )
    .await;

    for url in [
        format!("mysql://root@127.0.0.1:{port}/test?ssl-mode=VERIFY_CA&ssl-ca={ca}"),
        format!("mysql://root@127.0.0.1:{port}/test?ssl-mode=REQUIRED"),
        format!("mysql://root@127.0.0.1:{port}/test"),
    ] {
        let pool = connect(&url).await.unwrap_or_else(|e| panic!("{url}: {e}"));
        assert!(!mysql_cipher(&pool).await.is_empty(), "{url}");
        pool.close(Duration::from_secs(5)).await;
    }
    let plain = connect(&format!("mysql://root@127.0.0.1:{port}/test?ssl-mode=DISABLED")).await.unwrap();
    assert!(mysql_cipher(&plain).await.is_empty(), "DISABLED is plain text");
    plain.close(Duration::from_secs(5)).await;

    // A client certificate: `certuser` is `REQUIRE X509`. The MySQL driver takes RSA PKCS#1
    // keys only; another key is a configuration error that says so.
    let (cert, key) = (pki.path("client.crt"), pki.path("client.key"));
    let ec_key = format!(
        "mysql://certuser@localhost:{port}/test?ssl-mode=VERIFY_IDENTITY&ssl-ca={ca}&ssl-cert={cert}&ssl-key={key}"
    );
    let err = connect(&ec_key).await.expect_err("an EC key cannot be used");
    assert_eq!(err.kind(), ErrorKind::Config, "{err}");
    assert!(err.to_string().contains("PKCS#1"), "{err}");
    let (cert, key) = (pki.path("rsa-client.crt"), pki.path("rsa-client.key"));
    let with_cert = format!(
        "mysql://certuser@localhost:{port}/test?ssl-mode=VERIFY_IDENTITY&ssl-ca={ca}&ssl-cert={cert}&ssl-key={key}"
    );
    let pool = connect(&with_cert).await.unwrap_or_else(|e| panic!("{e}\n{}", maria.log()));
    assert!(!mysql_cipher(&pool).await.is_empty());
    pool.close(Duration::from_secs(5)).await;
    let without = format!("mysql://certuser@localhost:{port}/test?ssl-mode=VERIFY_IDENTITY&ssl-ca={ca}");
    assert!(connect(&without).await.is_err(), "certuser needs a client certificate");

    // The shared server has TLS off (have_ssl = DISABLED): REQUIRED must not fall back.
    let Some(shared) = keel_test::server_url(Backend::Mysql) else { return };
    let shared_url = url::Url::parse(&shared).unwrap();
    match connect(&shared).await {
        Ok(pool) if mysql_cipher(&pool).await.is_empty() => {
            pool.close(Duration::from_secs(5)).await;
            let mut required = shared_url.clone();
            required.query_pairs_mut().append_pair("ssl-mode", "REQUIRED");
            assert_tls_failure(required.as_str(), "the server does not support TLS (ssl-mode=REQUIRED)")
                .await;
        }
        Ok(_) => eprintln!("the shared MariaDB has TLS on: REQUIRED against a plain server not checked"),
        Err(e) => {
            eprintln!("the shared MariaDB is unreachable ({e}): REQUIRED against a plain server not checked")
        }
    }
}

/// The machine's PostgreSQL has `ssl = on` with a self-signed certificate: `require`
/// encrypts without checking it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sslmode_require_on_the_shared_postgres_is_encrypted() {
    let Some(mut url) = keel_test::server_url(Backend::Postgres).map(|u| url::Url::parse(&u).unwrap()) else {
        return;
    };
    url.query_pairs_mut().append_pair("sslmode", "require");
    let pool = match connect(url.as_str()).await {
        Ok(pool) => pool,
        Err(e)
            if e.kind() == ErrorKind::Connect
                && !keel_test::required_backends().contains(&Backend::Postgres) =>
        {
            eprintln!("SKIPPED: PostgreSQL unreachable: {e}");
            return;
        }
        Err(e) => panic!("{e}"),
    };
    assert!(pg_session_encrypted(&pool).await, "pg_stat_ssl says ssl = true");
    pool.close(Duration::from_secs(5)).await;
}

/// `postgres:///db?host=/var/run/postgresql` and `mysql://…?socket=…` reach the local servers
/// through their Unix sockets.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unix_sockets_reach_the_local_servers() {
    let pg_dir = "/var/run/postgresql";
    if Path::new(pg_dir).join(".s.PGSQL.5432").exists() {
        let pool = connect(&format!("postgres:///test?host={pg_dir}&user=root")).await.unwrap();
        assert_eq!(pool.config().url().target(), pg_dir);
        let mut conn = pool.get().await.unwrap();
        #[derive(QueryableByName)]
        struct Addr {
            #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Text>)]
            addr: Option<String>,
        }
        let addr: Addr = with_conn!(&mut conn, |c| {
            diesel::sql_query("SELECT host(inet_client_addr()) AS addr").get_result(c).await
        })
        .unwrap();
        assert_eq!(addr.addr, None, "a Unix-socket session has no client address");
        drop(conn);
        pool.close(Duration::from_secs(5)).await;
    } else {
        eprintln!("SKIPPED PostgreSQL part: no socket in {pg_dir}");
    }
    let my_socket = "/run/mysqld/mysqld.sock";
    if Path::new(my_socket).exists() {
        let pool = connect(&format!("mysql://root@localhost/test?socket={my_socket}")).await.unwrap();
        assert_eq!(pool.config().url().target(), my_socket);
        let mut conn = pool.get().await.unwrap();
        #[derive(QueryableByName)]
        struct Proto {
            #[diesel(sql_type = diesel::sql_types::Text)]
            host: String,
        }
        let proto: Proto = with_conn!(&mut conn, |c| {
            diesel::sql_query(
                "SELECT HOST AS host FROM information_schema.PROCESSLIST WHERE ID = CONNECTION_ID()",
            )
            .get_result(c)
            .await
        })
        .unwrap();
        assert_eq!(proto.host, "localhost", "a socket session's host is localhost, not an address:port");
        drop(conn);
        pool.close(Duration::from_secs(5)).await;
    } else {
        eprintln!("SKIPPED MySQL part: no socket at {my_socket}");
    }
}
