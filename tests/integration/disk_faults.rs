//! The journal directory on a file system that fills up, while running and across a restart:
//! writes get 503, reads, `/healthz` and the lead history keep serving, `/readyz` says not
//! ready, and once space returns the engine takes writes again, having lost nothing it
//! acknowledged and kept nothing it refused.
//! The file system is a size-limited tmpfs the test mounts over the journal directory, which
//! needs root: elsewhere the test is skipped, unless `LEADROUTER_REQUIRE_TMPFS` is set (CI).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::common::{broker, lead, Srv};

/// A tmpfs mounted at a path, unmounted when dropped.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(at: &Path, bytes: u64) -> Option<Tmpfs> {
        std::fs::create_dir_all(at).unwrap();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={bytes}"), "tmpfs"])
            .arg(at)
            .status()
            .is_ok_and(|s| s.success());
        ok.then(|| Tmpfs(at.to_path_buf()))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Writes a file until the file system is full.
fn fill(path: &Path) {
    let mut f = std::fs::File::create(path).unwrap();
    let chunk = vec![7u8; 4096];
    while f.write_all(&chunk).is_ok() {}
    let _ = f.sync_all();
}

/// Decides `id` and says whether the engine acknowledged it (200 or 202), or refused it with
/// 503 (anything else fails the test).
async fn decide(s: &Srv, id: &str) -> bool {
    let (st, body) = s.post("/api/routing/decide", &lead(id, "TX", &["AUTO"])).await;
    match st {
        200 | 202 => true,
        503 => {
            assert_eq!(body["error"]["code"], "unavailable", "{body}");
            false
        }
        _ => panic!("decide {id}: {st} {body}"),
    }
}

/// Decides until a write is refused: the pages already allocated take writes until they are
/// full. Acknowledged leads go to `acked`.
async fn until_refused(s: &Srv, acked: &mut Vec<String>, case: &str) {
    for i in 0..2_000 {
        let id = format!("{case}-filling-{i}");
        if !decide(s, &id).await {
            return;
        }
        acked.push(id);
    }
    panic!("{case}: the full file system refused no write");
}

/// While writes fail: 503 for writes, reads and health answer, not ready.
async fn degraded(s: &Srv, acked: &[String], case: &str) {
    assert!(!decide(s, &format!("{case}-refused")).await, "{case}: a write while the file system refuses");
    assert_eq!(s.get("/healthz").await.0, 200, "{case}");
    let (st, ready) = s.get("/readyz").await;
    assert_eq!((st, ready["status"].as_str()), (503, Some("unavailable")), "{case}: {ready}");
    assert_eq!(s.get("/api/brokers").await.0, 200, "{case}");
    for id in acked.iter().rev().take(5) {
        assert_eq!(s.get(&format!("/api/leads/{id}")).await.0, 200, "{case}: acknowledged lead {id}");
    }
}

/// Decides until the engine takes writes again (it retries a second after a failure).
async fn recovers(s: &Srv, acked: &mut Vec<String>, case: &str) {
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut n = 0;
    loop {
        let id = format!("{case}-after-{n}");
        n += 1;
        if decide(s, &id).await {
            acked.push(id);
            break;
        }
        assert!(Instant::now() < deadline, "{case}: writes did not come back within 15 s");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(s.get("/readyz").await.0, 200, "{case}: ready again");
    for i in 0..20 {
        let id = format!("{case}-more-{i}");
        assert!(decide(s, &id).await, "{case}: {id} after recovery");
        acked.push(id);
    }
}

#[actix_rt::test]
async fn a_full_journal_file_system_refuses_writes_and_recovers_without_loss() {
    let dir = tempfile::tempdir().unwrap();
    let journal = dir.path().join("journal");
    let Some(mount) = Tmpfs::mount(&journal, 4 << 20) else {
        assert!(std::env::var_os("LEADROUTER_REQUIRE_TMPFS").is_none(), "LEADROUTER_REQUIRE_TMPFS is set but mounting a tmpfs failed");
        eprintln!("skipped: mounting a tmpfs needs root");
        return;
    };
    // Small segments, so the refused writes include segment rotations.
    let tweak = |c: &mut leadrouter::Config| c.storage.segment_bytes = 64 << 10;
    let s = Srv::start_with(dir.path(), tweak).await;
    s.add_broker(&broker("df-1", "TX", &["AUTO"], 5, 100_000, 1_000_000)).await;
    let mut acked = Vec::new();
    for i in 0..200 {
        let id = format!("before-{i}");
        assert!(decide(&s, &id).await, "{id}");
        acked.push(id);
    }

    // Case 1: the file system fills up while the engine runs.
    fill(&journal.join("filler"));
    until_refused(&s, &mut acked, "full").await;
    degraded(&s, &acked, "full").await;
    std::fs::remove_file(journal.join("filler")).unwrap();
    recovers(&s, &mut acked, "full").await;

    // Case 2: the engine restarts on the full file system (as a restart during the incident
    // would): it starts, replays, serves reads, refuses writes, and recovers the same way.
    s.stop().await;
    fill(&journal.join("filler"));
    let s = Srv::start_with(dir.path(), tweak).await;
    until_refused(&s, &mut acked, "restarted").await;
    degraded(&s, &acked, "restarted").await;
    std::fs::remove_file(journal.join("filler")).unwrap();
    recovers(&s, &mut acked, "restarted").await;
    s.stop().await;

    // Nothing acknowledged was lost: a restart replays every acknowledged lead, and the journal
    // reads back whole, its sequence unbroken.
    let records = crate::common::journal(dir.path());
    assert!(records.windows(2).all(|w| w[1].0 == w[0].0 + 1), "sequence numbers are consecutive");
    let s = Srv::start(dir.path()).await;
    for id in &acked {
        let (st, l) = s.get(&format!("/api/leads/{id}")).await;
        assert_eq!(st, 200, "acknowledged lead {id} after the restart: {l}");
    }
    assert!(acked.len() > 240, "{}", acked.len());
    for refused in ["full-refused", "restarted-refused"] {
        assert_eq!(s.get(&format!("/api/leads/{refused}")).await.0, 404, "a refused decision stays undone: {refused}");
    }
    s.stop().await;
    drop(mount);
}
