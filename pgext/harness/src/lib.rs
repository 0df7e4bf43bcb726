//! Test harness that runs SQL against a throwaway, real PostgreSQL 15 cluster with the weft extension
//! installed.
//!
//! Integration tests of the `weft` extension (`pgext/tests/*.rs`) need a real server, because the
//! extension is loaded through `shared_preload_libraries` and runs inside the server's own backend and
//! worker processes; none of that can be faked in the test process. Each [`Cluster`] is a private
//! `initdb` in its own directory under `/tmp`, listening only on a Unix socket in that directory, so any
//! number of tests (threads or nextest processes) can run clusters side by side without port clashes.
//! Dropping the `Cluster` stops the server and deletes the directory, also when the test panics.
//!
//! ```no_run
//! use weft_pg_harness::Cluster;
//!
//! let cluster = Cluster::start_with(&[("work_mem", "16MB")]);
//! let mut client = cluster.connect();
//! client.batch_execute("CREATE EXTENSION weft").unwrap();
//! let row = client.query_one("SELECT 1 + 1", &[]).unwrap();
//! assert_eq!(row.get::<_, i32>(0), 2);
//! ```
//!
//! Environment variables read at run time:
//!
//! - `WEFT_PG_SKIP_INSTALL=1`: do not build or install the extension; use whatever is installed already.
//! - `WEFT_PG_PROFILE`: cargo profile the extension is built with (default `test`; `dev`, `release` or
//!   a custom profile name also work).
//! - `WEFT_PG_BINDIR`: directory holding `initdb`, `pg_ctl`, `psql` and `pg_config` (default
//!   `/usr/lib/postgresql/15/bin`).
//!
//! Postgres refuses to run as root, and CI runs everything as root. When the test process is root, every
//! Postgres binary is run as the `postgres` OS user through `runuser`, and the cluster directory is
//! handed to that user. `install()` writes into the system Postgres directories, so it needs write
//! access there (root in CI).

/// The synchronous client that [`Cluster::connect`] returns, re-exported so tests need no dependency of
/// their own and always get the matching version.
pub use postgres;

pub mod differential;
pub mod explained;
pub mod reporting;
pub mod tpch;

/// A query result as text: rows of column values, `None` for NULL.
pub type Rows = Vec<Vec<Option<String>>>;

/// The current value of setting `name` (`current_setting`).
///
/// # Panics
/// If the setting does not exist or the query fails.
pub fn setting(client: &mut postgres::Client, name: &str) -> String {
    client
        .query_one("SELECT current_setting($1)", &[&name])
        .unwrap_or_else(|e| panic!("current_setting({name}): {e}"))
        .get(0)
}

/// Runs `sql` (simple query protocol) and returns its rows as text, or the
/// error as `"<SQLSTATE>: <message>"` (the message alone for errors that are
/// not the server's).
pub fn text_rows(client: &mut postgres::Client, sql: &str) -> Result<Rows, String> {
    let messages = client.simple_query(sql).map_err(|e| {
        e.as_db_error()
            .map_or(e.to_string(), |db| format!("{}: {}", db.code().code(), db.message()))
    })?;
    Ok(messages
        .iter()
        .filter_map(|m| match m {
            postgres::SimpleQueryMessage::Row(row) => {
                Some((0..row.len()).map(|i| row.get(i).map(str::to_string)).collect())
            }
            _ => None,
        })
        .collect())
}

use std::ffi::OsString;
use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

/// Where Debian's `postgresql-15` package puts the server binaries.
const DEFAULT_BINDIR: &str = "/usr/lib/postgresql/15/bin";

/// Every cluster uses the same port: it only names the socket file, and each socket lives in the
/// cluster's own directory.
const PORT: u16 = 5432;

/// Cargo package (and extension) name of the extension crate.
const EXTENSION_PACKAGE: &str = "weft";

/// How many trailing lines of a tool's output or the server log go into panic messages: enough to
/// show the error, few enough to keep the test report readable.
const TAIL_LINES: usize = 80;

/// Builds the extension and installs it into the system Postgres, at most once per test process.
///
/// [`Cluster::start`] calls this, so tests rarely need to. It runs `cargo pgrx install` from the
/// workspace root every time a test process first asks, rather than trusting an earlier install,
/// because the extension sources may have changed since; cargo's incremental build makes the
/// unchanged case quick. Nextest runs each test in its own process, in parallel, so installs are
/// serialized across processes by an exclusive lock on `<target dir>/weft-pg-harness.lock`. Within
/// one nextest run (same `NEXTEST_RUN_ID`) only the first process installs: a reinstall deletes and
/// rewrites `weft.so` and the SQL script, which would race with clusters that other test processes
/// are already starting.
///
/// The build output is captured and shown only when the install fails. `cargo pgrx install` needs
/// cargo-pgrx 0.18.0 on the `PATH` and a `cargo pgrx init` configuration that names a pg15
/// `pg_config` (`~/.pgrx/config.toml`). The harness deliberately does not set `PGRX_PG_CONFIG_PATH`
/// to avoid that: pgrx-pg-sys reruns its bindgen build script whenever that variable changes, so every
/// switch between a harness build and a plain `cargo build` would regenerate the bindings.
///
/// Does nothing when `WEFT_PG_SKIP_INSTALL=1`.
///
/// # Panics
///
/// If the build or install fails, with the tail of `cargo pgrx install`'s output. Later calls in the
/// same process panic with the same message instead of rebuilding.
pub fn install() {
    static INSTALLED: OnceLock<Result<(), String>> = OnceLock::new();
    if env_flag("WEFT_PG_SKIP_INSTALL") {
        return;
    }
    if let Err(message) = INSTALLED.get_or_init(install_locked) {
        panic!("{message}");
    }
}

fn install_locked() -> Result<(), String> {
    let root = workspace_root();
    let target = target_dir(&root);
    fs::create_dir_all(&target).map_err(|e| format!("cannot create {}: {e}", target.display()))?;
    let lock_path = target.join("weft-pg-harness.lock");
    let lock = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|e| format!("cannot open {}: {e}", lock_path.display()))?;
    // Released when `lock` is closed at the end of this function, also if we return early.
    lock.lock()
        .map_err(|e| format!("cannot lock {}: {e}", lock_path.display()))?;

    let stamp = target.join("weft-pg-harness.installed");
    let run_id = std::env::var("NEXTEST_RUN_ID").ok().filter(|id| !id.is_empty());
    if let Some(id) = &run_id {
        if fs::read_to_string(&stamp).is_ok_and(|installed| installed == *id) {
            return Ok(());
        }
    }

    let mut cmd = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    cmd.current_dir(&root)
        .args(["pgrx", "install", "--pg-config"])
        .arg(bindir().join("pg_config"))
        .args(["-p", EXTENSION_PACKAGE]);
    let mut build_flags = append_flag(std::env::var_os("PGRX_BUILD_FLAGS"), UNIFY_FLAGS);
    select_profile(&mut cmd, &mut build_flags)?;
    cmd.env("PGRX_BUILD_FLAGS", build_flags);
    // Outside nextest (make demo, the benchmarks) nothing else reports this build: cargo's progress
    // and errors go to the terminal. Under nextest they stay captured, shown with a failing test.
    if run_id.is_none() {
        cmd.stderr(Stdio::inherit());
    }
    let output = cmd.output().map_err(|e| format!("cannot run {cmd:?}: {e}"))?;
    if !output.status.success() {
        return Err(format!(
            "installing the weft extension failed ({}): {cmd:?}\n{}",
            output.status,
            tail(&combined_output(&output), TAIL_LINES)
        ));
    }
    if let Some(id) = run_id {
        fs::write(&stamp, id).map_err(|e| format!("cannot write {}: {e}", stamp.display()))?;
    }
    Ok(())
}

/// Added to the `cargo build` that `cargo pgrx install` runs (through `PGRX_BUILD_FLAGS`). Alone,
/// that build selects the extension's library without dev-dependencies, which resolves the features
/// of DataFusion's own dependencies differently from the workspace's builds (tokio without `net` or
/// `rt-multi-thread`, serde without `alloc`) and so compiles DataFusion once more. The whole
/// workspace with an example (which brings the dev-dependencies in) resolves exactly as
/// `cargo nextest run --workspace` and `make demo`'s build do, so their artifacts serve it.
const UNIFY_FLAGS: &str = "--workspace --example tpch_demo";

/// Adds the cargo profile chosen by `WEFT_PG_PROFILE` to a `cargo pgrx install` command, or to the
/// flags of the build it runs.
fn select_profile(cmd: &mut Command, build_flags: &mut OsString) -> Result<(), String> {
    let profile = std::env::var("WEFT_PG_PROFILE").unwrap_or_else(|_| "test".into());
    match profile.as_str() {
        "dev" | "debug" => {}
        "release" => {
            cmd.arg("--release");
        }
        // cargo-pgrx 0.18 reads the schema back from `target/<profile name>/`, but cargo writes the
        // `test` profile's output to `target/debug/`, so `--profile test` fails. Handing the flag to
        // the inner `cargo build` instead keeps cargo-pgrx on its dev-profile paths, which is exactly
        // where the test profile's output lands. The test profile is the default because `cargo test`
        // and nextest build the workspace with it too, so the extension reuses the dependencies
        // (DataFusion, weft-core, weft-runtime, ...) already compiled for the tests, with the same
        // profile and, through UNIFY_FLAGS, the same features.
        "test" => {
            *build_flags = append_flag(Some(std::mem::take(build_flags)), "--profile test");
        }
        // Same path mismatch as `test` (bench output goes to `target/release/`), and here no flag
        // combination avoids it, because cargo rejects `--release` together with `--profile`.
        "bench" => {
            return Err("WEFT_PG_PROFILE=bench is not supported by cargo-pgrx 0.18; use release".into());
        }
        custom => {
            cmd.args(["--profile", custom]);
        }
    }
    Ok(())
}

/// Appends `value` to a space-separated flag list such as `PGRX_BUILD_FLAGS`.
fn append_flag(list: Option<OsString>, value: &str) -> OsString {
    let mut list = list.unwrap_or_default();
    if !list.is_empty() {
        list.push(" ");
    }
    list.push(value);
    list
}

/// Finds the workspace root, from which `cargo pgrx install` must run to pick up the workspace's
/// profiles and lock file.
fn workspace_root() -> PathBuf {
    let manifest_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest_dir
        .ancestors()
        .find(|dir| {
            fs::read_to_string(dir.join("Cargo.toml"))
                .is_ok_and(|toml| toml.lines().any(|line| line.trim() == "[workspace]"))
        })
        .unwrap_or_else(|| panic!("no workspace Cargo.toml above {}", manifest_dir.display()))
        .to_path_buf()
}

fn target_dir(workspace_root: &Path) -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR").filter(|dir| !dir.is_empty()) {
        // The nested cargo runs in the workspace root, so that is what a relative path is relative to.
        Some(dir) => workspace_root.join(dir),
        None => workspace_root.join("target"),
    }
}

fn bindir() -> PathBuf {
    std::env::var_os("WEFT_PG_BINDIR")
        .filter(|dir| !dir.is_empty())
        .unwrap_or_else(|| DEFAULT_BINDIR.into())
        .into()
}

fn env_flag(name: &str) -> bool {
    std::env::var_os(name).is_some_and(|value| !value.is_empty() && value != "0")
}

fn running_as_root() -> bool {
    // SAFETY: geteuid has no preconditions, touches no memory of ours and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// A command running one of the Postgres binaries, as the `postgres` OS user when we are root.
fn pg_command(program: &str, cwd: &Path) -> Command {
    let exe = bindir().join(program);
    let mut cmd = if running_as_root() {
        let mut cmd = Command::new("runuser");
        cmd.args(["-u", "postgres", "--"]).arg(exe);
        cmd
    } else {
        Command::new(exe)
    };
    // The binaries resolve their own path through the working directory, which fails when the
    // `postgres` user cannot enter ours (e.g. /root).
    cmd.current_dir(cwd);
    // A developer's libpq settings must not point psql or pg_ctl at some other server.
    for var in [
        "PGHOST",
        "PGHOSTADDR",
        "PGPORT",
        "PGUSER",
        "PGDATABASE",
        "PGDATA",
        "PGOPTIONS",
        "PGSERVICE",
        "PGSERVICEFILE",
        "PGPASSWORD",
        "PGPASSFILE",
    ] {
        cmd.env_remove(var);
    }
    cmd
}

fn run(cmd: &mut Command) -> Output {
    cmd.stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"))
}

fn combined_output(output: &Output) -> String {
    let mut text = String::from_utf8_lossy(&output.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&output.stderr));
    text
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    let skipped = all.len().saturating_sub(lines);
    let mut out = String::new();
    if skipped > 0 {
        out.push_str(&format!("[... {skipped} earlier lines omitted ...]\n"));
    }
    for line in &all[skipped..] {
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// Renders one `postgresql.conf` line. Values are always quoted, which Postgres accepts for every
/// setting type, so callers pass plain values (`"16"`, `""`, `"weft"`) and never fight the quoting.
fn conf_line(name: &str, value: &str) -> String {
    assert!(
        !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.'),
        "invalid setting name {name:?}"
    );
    assert!(
        !value.contains(['\n', '\r']),
        "setting {name} has a line break in its value"
    );
    let escaped = value.replace('\\', "\\\\").replace('\'', "''");
    format!("{name} = '{escaped}'\n")
}

/// A running, throwaway PostgreSQL 15 cluster.
///
/// Dropping it stops the server (immediate shutdown) and deletes its directory.
#[derive(Debug)]
pub struct Cluster {
    data: PathBuf,
    sock: PathBuf,
    log: PathBuf,
    /// The server's port: its socket's name, and on 127.0.0.1 where it
    /// listens there ([`Cluster::start_listening`]).
    port: u16,
    // Declared last so it is removed only after `Drop::drop` has stopped the server.
    dir: tempfile::TempDir,
}

impl Cluster {
    /// Installs the extension (see [`install`]) and starts a cluster that preloads it.
    ///
    /// # Panics
    ///
    /// If the install, `initdb` or the server start fails; a failed start reports the server log's tail.
    pub fn start() -> Cluster {
        Cluster::start_with(&[])
    }

    /// Like [`Cluster::start`], with extra `postgresql.conf` settings.
    ///
    /// The settings are written after the harness's own, so they override them (for example
    /// `("max_parallel_workers_per_gather", "0")`). Values are quoted by the harness: pass `"64MB"`,
    /// not `"'64MB'"`.
    ///
    /// # Panics
    ///
    /// As [`Cluster::start`], and on a setting name that is not a plain identifier or a value with a
    /// line break.
    pub fn start_with(settings: &[(&str, &str)]) -> Cluster {
        install();
        Cluster::launch("weft", settings)
    }

    /// Starts a cluster without installing or preloading the extension.
    ///
    /// This exists for the harness's own tests, which must not depend on building the extension.
    /// Extension tests should use [`Cluster::start`] or [`Cluster::start_with`].
    ///
    /// # Panics
    ///
    /// As [`Cluster::start_with`].
    pub fn start_plain(settings: &[(&str, &str)]) -> Cluster {
        Cluster::launch("", settings)
    }

    /// Like [`Cluster::start_with`], also listening on 127.0.0.1 at a free
    /// port ([`Cluster::port`]), for clients that speak only TCP (pgjdbc).
    ///
    /// # Panics
    ///
    /// As [`Cluster::start`], or when no free port is found.
    pub fn start_listening(settings: &[(&str, &str)]) -> Cluster {
        install();
        // A port the kernel has just handed out and taken back is free,
        // unless another process takes it in between: then the start fails
        // and says so.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .unwrap_or_else(|e| panic!("no free TCP port on 127.0.0.1: {e}"))
            .port();
        let listening = [("listen_addresses", "127.0.0.1")];
        let settings: Vec<(&str, &str)> = listening.iter().chain(settings).copied().collect();
        Cluster::launch_at(port, "weft", &settings)
    }

    /// The server's port (on its socket directory, and on 127.0.0.1 for a
    /// cluster of [`Cluster::start_listening`]).
    pub fn port(&self) -> u16 {
        self.port
    }

    fn launch(preload: &str, settings: &[(&str, &str)]) -> Cluster {
        Cluster::launch_at(PORT, preload, settings)
    }

    fn launch_at(port: u16, preload: &str, settings: &[(&str, &str)]) -> Cluster {
        // Not $TMPDIR: a Unix socket path must fit in 107 bytes, and /tmp keeps it short.
        let dir = tempfile::Builder::new()
            .prefix("weft-pg-")
            .tempdir_in("/tmp")
            .unwrap_or_else(|e| panic!("cannot create a cluster directory in /tmp: {e}"));
        let cluster = Cluster {
            data: dir.path().join("data"),
            sock: dir.path().join("sock"),
            log: dir.path().join("log"),
            port,
            dir,
        };
        // From here on a panic drops `cluster`, which stops a half-started server and cleans up.
        fs::create_dir(&cluster.sock).unwrap_or_else(|e| panic!("cannot create {}: {e}", cluster.sock.display()));
        if running_as_root() {
            let output = run(Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(cluster.dir.path()));
            assert!(
                output.status.success(),
                "chown of the cluster directory failed:\n{}",
                combined_output(&output)
            );
        }

        let output = run(pg_command("initdb", cluster.dir.path())
            .arg("-D")
            .arg(&cluster.data)
            .args([
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
            ]));
        assert!(
            output.status.success(),
            "initdb failed ({}):\n{}",
            output.status,
            tail(&combined_output(&output), TAIL_LINES)
        );

        let socket_dir = cluster.sock.to_str().expect("the cluster directory is not UTF-8");
        let port = cluster.port.to_string();
        let harness_settings = [
            ("listen_addresses", ""),
            ("unix_socket_directories", socket_dir),
            ("port", port.as_str()),
            ("shared_preload_libraries", preload),
            ("max_worker_processes", "16"),
            ("max_parallel_workers", "16"),
            ("max_parallel_workers_per_gather", "4"),
            ("fsync", "off"),
            ("logging_collector", "off"),
        ];
        let mut conf = String::from("\n# Added by weft-pg-harness; later lines override earlier ones.\n");
        for (name, value) in harness_settings.iter().chain(settings) {
            conf.push_str(&conf_line(name, value));
        }
        let conf_path = cluster.data.join("postgresql.conf");
        OpenOptions::new()
            .append(true)
            .open(&conf_path)
            .and_then(|mut file| file.write_all(conf.as_bytes()))
            .unwrap_or_else(|e| panic!("cannot append to {}: {e}", conf_path.display()));

        cluster.pg_ctl(&["start"]);
        cluster
    }

    /// Runs `pg_ctl -w <action>` on the cluster (logging to its log).
    ///
    /// # Panics
    ///
    /// If pg_ctl fails, with its output and the server log's tail.
    fn pg_ctl(&self, action: &[&str]) {
        let output = run(pg_command("pg_ctl", self.dir.path())
            .arg("-D")
            .arg(&self.data)
            .arg("-l")
            .arg(&self.log)
            .args(["-w", "-t", "60"])
            .args(action));
        assert!(
            output.status.success(),
            "pg_ctl {action:?} failed ({}):\n{}\nserver log:\n{}",
            output.status,
            combined_output(&output),
            tail(&self.log(), TAIL_LINES)
        );
    }

    /// Connects as the `postgres` superuser to the `postgres` database.
    ///
    /// # Panics
    ///
    /// If the connection fails, with the server log's tail.
    pub fn connect(&self) -> postgres::Client {
        self.connect_as("postgres")
    }

    /// Connects as `postgres` to database `name`, first creating it (UTF8, from `template0`, with
    /// `options` such as `LOCALE 'en_US.UTF-8'`) unless it is `postgres` itself.
    ///
    /// # Panics
    ///
    /// If the database cannot be created or the connection fails.
    pub fn database(&self, name: &str, options: &str) -> postgres::Client {
        if name != "postgres" {
            self.connect()
                .batch_execute(&format!(
                    "CREATE DATABASE {name} TEMPLATE template0 ENCODING 'UTF8' {options}"
                ))
                .unwrap_or_else(|e| panic!("creating database {name} failed: {e}"));
        }
        self.connect_to(name, "postgres")
    }

    /// Connects as `user` to the `postgres` database. Authentication is `trust`, so any existing role
    /// works without a password.
    ///
    /// # Panics
    ///
    /// If the connection fails (e.g. the role does not exist), with the server log's tail.
    pub fn connect_as(&self, user: &str) -> postgres::Client {
        self.connect_to("postgres", user)
    }

    /// Connects as `user` to `database`.
    ///
    /// # Panics
    ///
    /// If the connection fails, with the server log's tail.
    pub fn connect_to(&self, database: &str, user: &str) -> postgres::Client {
        postgres::Config::new()
            .host_path(&self.sock)
            .port(self.port)
            .user(user)
            .dbname(database)
            .connect(postgres::NoTls)
            .unwrap_or_else(|e| {
                panic!(
                    "connecting as {user} failed: {e}\nserver log:\n{}",
                    tail(&self.log(), TAIL_LINES)
                )
            })
    }

    /// A session as [`Cluster::connect`]'s, with the messages below ERROR the server sends it
    /// (NOTICE, WARNING), as `"<severity>: <message>"`, collected in order.
    ///
    /// # Panics
    ///
    /// If the connection fails, with the server log's tail.
    pub fn connect_collecting_notices(&self) -> (postgres::Client, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
        self.connect_collecting_notices_as("postgres")
    }

    /// [`Cluster::connect_collecting_notices`] as `user`.
    ///
    /// # Panics
    ///
    /// If the connection fails, with the server log's tail.
    pub fn connect_collecting_notices_as(
        &self,
        user: &str,
    ) -> (postgres::Client, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
        let notices = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let collected = std::sync::Arc::clone(&notices);
        let client = postgres::Config::new()
            .host_path(&self.sock)
            .port(self.port)
            .user(user)
            .dbname("postgres")
            .notice_callback(move |notice| {
                let line = format!("{}: {}", notice.severity(), notice.message());
                collected
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner())
                    .push(line);
            })
            .connect(postgres::NoTls)
            .unwrap_or_else(|e| panic!("connecting failed: {e}\nserver log:\n{}", tail(&self.log(), TAIL_LINES)));
        (client, notices)
    }

    /// The directory holding the server's Unix socket, for clients other than [`Cluster::connect`]
    /// (use it as the host, with [`Cluster::port`]).
    pub fn socket_dir(&self) -> &Path {
        &self.sock
    }

    /// The cluster's data directory (owned by `postgres`; readable as root), for tests that look
    /// at or damage the files behind a relation (`pg_relation_filepath` is relative to it).
    pub fn data_dir(&self) -> &Path {
        &self.data
    }

    /// Stops the server (a clean shutdown, which writes every dirty buffer out), runs `f` while it
    /// is down (a test may change the files under [`Cluster::data_dir`]), and starts it again:
    /// what was in shared memory is gone, so the next reads come from the files. Connections made
    /// before are closed; connect anew.
    ///
    /// # Panics
    ///
    /// If the stop or the start fails, with the server log's tail.
    pub fn while_stopped<R>(&self, f: impl FnOnce() -> R) -> R {
        self.pg_ctl(&["-m", "fast", "stop"]);
        let result = f();
        self.pg_ctl(&["start"]);
        result
    }

    /// Leaves the server running and its directory in place (for a cluster that outlives the
    /// program, such as the benchmarks' `bench_cluster` example); returns the directory, which holds
    /// `data/`, `sock/` and `log`. Stop it with `pg_ctl -D <dir>/data stop` (as `postgres` when run as
    /// root) and remove the directory.
    pub fn keep(self) -> PathBuf {
        let dir = self.dir.path().to_owned();
        // Neither `Drop` runs: ours would stop the server, the TempDir's delete the directory.
        std::mem::forget(self);
        dir
    }

    /// The server log so far, to put into assertion messages.
    ///
    /// Never panics: an unreadable log yields a placeholder text, since this is usually called while
    /// already reporting another failure.
    pub fn log(&self) -> String {
        match fs::read(&self.log) {
            Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
            Err(e) => format!("<cannot read {}: {e}>", self.log.display()),
        }
    }

    /// Runs `sql` through `psql -X -A -t -v ON_ERROR_STOP=1` as the `postgres` user and returns its
    /// standard output: unaligned, tuples only, so results read like plain text (handy for output
    /// that should look like a demo session). `sql` is a psql script, so it may hold several
    /// statements and psql meta-commands; the first error stops it.
    ///
    /// # Panics
    ///
    /// If psql fails, with its standard error and output.
    pub fn psql(&self, sql: &str) -> String {
        let mut cmd = pg_command("psql", self.dir.path());
        cmd.args(["-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h"])
            .arg(&self.sock)
            .args([
                "-p",
                &self.port.to_string(),
                "-U",
                "postgres",
                "-d",
                "postgres",
                "-f",
                "-",
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
        let mut stdin = child.stdin.take().expect("psql stdin is piped");
        // Feed the script from another thread: psql may fill its output pipe before it has read
        // all of a long script, and we only drain that pipe in wait_with_output.
        let output = std::thread::scope(|scope| {
            scope.spawn(move || {
                // A write error means psql exited early; its exit status and stderr tell why.
                let _ = stdin.write_all(sql.as_bytes());
            });
            child.wait_with_output()
        })
        .unwrap_or_else(|e| panic!("waiting for psql failed: {e}"));
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        assert!(
            output.status.success(),
            "psql failed ({}):\n{}\nstandard output:\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr),
            tail(&stdout, TAIL_LINES)
        );
        stdout
    }

    fn stop(&self) {
        if !self.data.exists() {
            return;
        }
        let mut cmd = pg_command("pg_ctl", self.dir.path());
        cmd.arg("-D").arg(&self.data).args(["-m", "immediate", "-w", "stop"]);
        // Errors are ignored: there may be no server (initdb or start failed), and a failure here must
        // not turn a test's panic into a double panic (which aborts the process).
        let _ = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[test]
    fn plain_cluster_runs_queries_and_honours_settings() {
        let cluster = Cluster::start_plain(&[("work_mem", "8MB"), ("cluster_name", "weft's \\test")]);
        let mut client = cluster.connect();
        let one: i32 = client.query_one("SELECT 1", &[]).unwrap().get(0);
        assert_eq!(one, 1);
        let show = |client: &mut postgres::Client, name: &str| -> String {
            client.query_one(&format!("SHOW {name}"), &[]).unwrap().get(0)
        };
        assert_eq!(show(&mut client, "work_mem"), "8MB");
        assert_eq!(show(&mut client, "cluster_name"), "weft's \\test");
        assert_eq!(show(&mut client, "shared_preload_libraries"), "");
        assert_eq!(show(&mut client, "max_parallel_workers_per_gather"), "4");
        assert_eq!(show(&mut client, "listen_addresses"), "");

        assert_eq!(cluster.psql("SELECT 1;\nSELECT 'a' AS x, 2 AS y;"), "1\na|2\n");
        client.batch_execute("CREATE ROLE tester LOGIN").unwrap();
        let user: String = cluster
            .connect_as("tester")
            .query_one("SELECT current_user", &[])
            .unwrap()
            .get(0);
        assert_eq!(user, "tester");
        assert!(
            cluster.log().contains("database system is ready to accept connections"),
            "{}",
            cluster.log()
        );
    }

    #[test]
    fn psql_reports_errors() {
        let cluster = Cluster::start_plain(&[]);
        let panic = std::panic::catch_unwind(|| cluster.psql("SELECT 1;\nSELECT * FROM no_such_table;\nSELECT 2;"))
            .expect_err("psql should have failed");
        let message = panic_message(&*panic);
        assert!(message.contains("no_such_table"), "{message}");
    }

    #[test]
    fn drop_stops_the_server_and_removes_the_directory_after_a_panic() {
        let dir = Mutex::new(None);
        let result = std::panic::catch_unwind(|| {
            let cluster = Cluster::start_plain(&[]);
            *dir.lock().unwrap() = Some(cluster.socket_dir().parent().unwrap().to_path_buf());
            let pid = fs::read_to_string(cluster.data.join("postmaster.pid")).unwrap();
            panic!("deliberate test failure; postmaster {}", pid.lines().next().unwrap());
        });
        let message = panic_message(&*result.expect_err("the closure panics"));
        let dir = dir.into_inner().unwrap().expect("the cluster started");
        assert!(!dir.exists(), "{} survived the drop", dir.display());
        let pid: i32 = message.rsplit(' ').next().unwrap().parse().unwrap();
        assert!(!process_runs(pid), "postmaster {pid} still runs");
    }

    /// Whether `pid` exists and is not a zombie. The stopped postmaster was reparented away from us
    /// when pg_ctl daemonized it, and its new parent may reap it only later, so a zombie counts as
    /// stopped.
    fn process_runs(pid: i32) -> bool {
        fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
            let state = stat.rsplit_once(')').map(|(_, rest)| rest.trim_start());
            state.is_some_and(|state| !state.starts_with('Z'))
        })
    }

    #[test]
    fn failed_start_reports_the_server_log() {
        let panic = std::panic::catch_unwind(|| Cluster::start_plain(&[("max_connections", "lots")]))
            .expect_err("start should have failed");
        let message = panic_message(&*panic);
        assert!(message.contains("max_connections"), "{message}");
        assert!(message.contains("server log:"), "{message}");
    }

    #[test]
    fn conf_values_are_quoted() {
        assert_eq!(conf_line("a.b_c", "it's"), "a.b_c = 'it''s'\n");
        assert_eq!(conf_line("x", ""), "x = ''\n");
        assert_eq!(conf_line("x", "C:\\dir"), "x = 'C:\\\\dir'\n");
    }

    #[test]
    fn tail_keeps_the_last_lines() {
        assert_eq!(tail("a\nb\nc\n", 2), "[... 1 earlier lines omitted ...]\nb\nc\n");
        assert_eq!(tail("a\nb", 5), "a\nb\n");
    }

    fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
        payload
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_default()
    }
}
