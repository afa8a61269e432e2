//! Clean-up that happens however the run ends.
//!
//! - Normal end or error: [`Registry::cleanup`] from `main` (and from `Drop` on a panic).
//! - SIGINT, SIGTERM, SIGHUP: a thread waiting on the signals takes the registry lock (so the
//!   main thread cannot spawn or create anything more), kills every registered node, sweeps the
//!   namespaces and links, removes the work dir, and exits with 130.
//! - SIGKILL of the harness: every node was started under `setpriv --pdeathsig KILL` and dies
//!   with it; the namespaces and bridges are removed by the sweep at the start of the next run
//!   (or `cairn-testnet --clean`).
//!
//! One run at a time: [`RunLock`] holds an exclusive lock on [`LOCK_FILE`], taken before the
//! start-up sweep, so a second run never sweeps away the namespaces of a live one.

use std::collections::BTreeSet;
use std::fs::File;
use std::path::PathBuf;
use std::process::{Child, Command};
use std::sync::{Arc, Mutex, MutexGuard};

use anyhow::{Context, Result, anyhow};

use crate::topology;

/// Held for the whole run.
pub const LOCK_FILE: &str = "/run/cairn-testnet.lock";
/// Exit status after an interrupt (as a shell reports SIGINT).
const INTERRUPTED_EXIT: i32 = 130;

pub struct RunLock {
    _file: File,
}

impl RunLock {
    pub fn acquire() -> Result<RunLock> {
        let file = File::create(LOCK_FILE).with_context(|| format!("create {LOCK_FILE}"))?;
        file.try_lock().map_err(|e| {
            anyhow!("another cairn-testnet run holds {LOCK_FILE} ({e}); wait for it or stop it")
        })?;
        Ok(RunLock { _file: file })
    }
}

#[derive(Default)]
struct State {
    pids: BTreeSet<u32>,
    workdir: Option<PathBuf>,
    keep_workdir: bool,
    /// ARP table limits to restore (the run raised them).
    neighbour_limits: Option<[u64; 3]>,
}

/// What exists and must be removed: node processes, the work dir; namespaces and links are
/// found by their prefix.
#[derive(Clone, Default)]
pub struct Registry {
    state: Arc<Mutex<State>>,
}

impl Registry {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic elsewhere must not stop the clean-up: the state is a plain set.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn set_workdir(&self, dir: PathBuf, keep: bool) {
        let mut s = self.lock();
        s.workdir = Some(dir);
        s.keep_workdir = keep;
    }

    /// Spawns under the lock and records the pid.
    pub fn spawn(&self, cmd: &mut Command) -> Result<Child> {
        let mut s = self.lock();
        let child = cmd.spawn().context("spawn cairnd")?;
        s.pids.insert(child.id());
        Ok(child)
    }

    /// Raises the kernel's ARP table limits for `hosts` and remembers the old ones.
    pub fn raise_neighbour_limits(&self, hosts: usize) -> Result<()> {
        let mut s = self.lock();
        let old = topology::raise_neighbour_limits(topology::neighbour_entries(hosts))?;
        if s.neighbour_limits.is_none() {
            s.neighbour_limits = old;
        }
        Ok(())
    }

    /// Keeps the work dir (its logs explain a failed run).
    pub fn keep_workdir(&self) {
        self.lock().keep_workdir = true;
    }

    pub fn forget(&self, pid: u32) {
        self.lock().pids.remove(&pid);
    }

    /// Runs `f` under the lock: namespace and link changes made inside cannot interleave with
    /// an interrupt's sweep.
    pub fn guarded<T>(&self, f: impl FnOnce() -> Result<T>) -> Result<T> {
        let _s = self.lock();
        f()
    }

    /// Kills every registered process, sweeps namespaces and links, removes the work dir unless
    /// it is kept. Safe to call twice.
    pub fn cleanup(&self) -> Vec<String> {
        let mut s = self.lock();
        cleanup_locked(&mut s)
    }
}

fn cleanup_locked(s: &mut State) -> Vec<String> {
    let mut notes = Vec::new();
    for pid in std::mem::take(&mut s.pids) {
        // Registered pids are this run's own children.
        let _ = Command::new("kill")
            .args(["-KILL", &pid.to_string()])
            .status();
    }
    match topology::sweep() {
        Ok(removed) => notes.push(format!("removed {} namespaces/links", removed.len())),
        Err(e) => notes.push(format!("sweep failed: {e:#}")),
    }
    if let Some(limits) = s.neighbour_limits.take() {
        match topology::write_neighbour_limits(limits) {
            Ok(()) => notes.push(format!("ARP table limits restored to {limits:?}")),
            Err(e) => notes.push(format!("cannot restore the ARP table limits: {e:#}")),
        }
    }
    if let Some(dir) = s.workdir.take() {
        if s.keep_workdir {
            notes.push(format!("kept {}", dir.display()));
        } else if let Err(e) = std::fs::remove_dir_all(&dir) {
            notes.push(format!("cannot remove {}: {e}", dir.display()));
        }
    }
    notes
}

/// Starts the thread that cleans up on SIGINT, SIGTERM or SIGHUP; returns once the handlers
/// are installed.
pub fn install(registry: Registry) -> Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("signal runtime")?;
    let (ready_tx, ready_rx) = std::sync::mpsc::channel::<Result<()>>();
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            runtime.block_on(async move {
                let streams = (
                    signal(SignalKind::interrupt()),
                    signal(SignalKind::terminate()),
                    signal(SignalKind::hangup()),
                );
                let (mut int, mut term, mut hup) = match streams {
                    (Ok(a), Ok(b), Ok(c)) => (a, b, c),
                    _ => {
                        let _ = ready_tx.send(Err(anyhow!("cannot install signal handlers")));
                        return;
                    }
                };
                let _ = ready_tx.send(Ok(()));
                let name = tokio::select! {
                    _ = int.recv() => "SIGINT",
                    _ = term.recv() => "SIGTERM",
                    _ = hup.recv() => "SIGHUP",
                };
                eprintln!("cairn-testnet: {name}: stopping nodes and removing namespaces...");
                // Never released: the main thread stays out of the topology until exit.
                let mut s = registry.lock();
                for note in cleanup_locked(&mut s) {
                    eprintln!("cairn-testnet: {note}");
                }
                std::process::exit(INTERRUPTED_EXIT);
            });
        })
        .context("spawn the signal thread")?;
    ready_rx
        .recv()
        .map_err(|_| anyhow!("the signal thread stopped"))?
}
