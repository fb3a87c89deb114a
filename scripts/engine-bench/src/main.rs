//! Measures the storage engines a range replica could keep its versioned keys in, with the
//! access pattern ranges have: applied Raft entries as write batches of versioned keys
//! (bucket, key, inverted timestamp) plus the range's applied index, committed without a
//! sync (the Raft log is the durable record; the engine is synced before the log is purged),
//! point reads of a key's newest version at or below a timestamp, short scans, and the time a
//! restarted member takes to open its data.
//!
//! `engine-bench ENGINE VALUE_BYTES KEYS PUTS [CACHE_MIB]`, ENGINE `redb` or `fjall`; one
//! line of figures per phase. Run each engine in its own process (the resident memory is the
//! process's): `scripts/engine-bench.sh` alternates them.

use std::path::Path;
use std::time::{Duration, Instant};

use rand::rngs::SmallRng;
use redb::ReadableDatabase;
use rand::{Rng, SeedableRng};

const BUCKET: &[u8] = b"bench\0";
/// Entries per write batch: what one apply round of a busy range commits at once.
const BATCH: usize = 32;
/// Batches between two synced commits (the purge point's sync).
const SYNC_EVERY: usize = 256;
const READS: usize = 20_000;
const SCANS: usize = 500;
const SCAN_LEN: usize = 100;

fn version_key(key: u64, ts: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(BUCKET.len() + 17);
    out.extend_from_slice(BUCKET);
    out.extend_from_slice(format!("k{key:08}").as_bytes());
    out.push(0);
    out.extend_from_slice(&(u64::MAX - ts).to_be_bytes());
    out
}

fn key_prefix(key: u64) -> Vec<u8> {
    let mut out = BUCKET.to_vec();
    out.extend_from_slice(format!("k{key:08}").as_bytes());
    out.push(0);
    out
}

trait Engine {
    fn apply(&mut self, batch: &[(Vec<u8>, Vec<u8>)], applied: u64, sync: bool);
    /// The newest version of `key` at or below `ts`.
    fn newest(&self, key: u64, ts: u64) -> Option<usize>;
    /// Entries of a scan from `key`, at most `n`.
    fn scan(&self, key: u64, n: usize) -> usize;
}

struct Redb {
    db: redb::Database,
}

const DATA: redb::TableDefinition<&[u8], &[u8]> = redb::TableDefinition::new("data");
const APPLIED: redb::TableDefinition<u64, u64> = redb::TableDefinition::new("applied");

impl Redb {
    fn open(path: &Path, cache: usize) -> Redb {
        let db = redb::Database::builder()
            .set_cache_size(cache)
            .create(path.join("ranges.redb"))
            .expect("open redb");
        Redb { db }
    }
}

impl Engine for Redb {
    fn apply(&mut self, batch: &[(Vec<u8>, Vec<u8>)], applied: u64, sync: bool) {
        let mut tx = self.db.begin_write().expect("begin");
        if !sync {
            tx.set_durability(redb::Durability::None).expect("durability");
        }
        {
            let mut data = tx.open_table(DATA).expect("table");
            for (k, v) in batch {
                data.insert(k.as_slice(), v.as_slice()).expect("insert");
            }
            let mut meta = tx.open_table(APPLIED).expect("table");
            meta.insert(1, applied).expect("insert");
        }
        tx.commit().expect("commit");
    }

    fn newest(&self, key: u64, ts: u64) -> Option<usize> {
        let tx = self.db.begin_read().expect("read");
        let data = tx.open_table(DATA).expect("table");
        let prefix = key_prefix(key);
        let from = version_key(key, ts);
        let mut it = data.range(from.as_slice()..).expect("range");
        let (k, v) = it.next()?.expect("entry");
        k.value().starts_with(&prefix).then(|| v.value().len())
    }

    fn scan(&self, key: u64, n: usize) -> usize {
        let tx = self.db.begin_read().expect("read");
        let data = tx.open_table(DATA).expect("table");
        let from = key_prefix(key);
        data.range(from.as_slice()..)
            .expect("range")
            .take(n)
            .map(|e| e.expect("entry").1.value().len())
            .count()
    }
}

struct Fjall {
    db: fjall::Database,
    data: fjall::Keyspace,
    meta: fjall::Keyspace,
}

impl Fjall {
    fn open(path: &Path, cache: usize, value_bytes: usize) -> Fjall {
        let db = fjall::Database::builder(path.join("fjall"))
            .cache_size(cache as u64)
            .manual_journal_persist(true)
            .open()
            .expect("open fjall");
        let separate = value_bytes >= 4096;
        let data = db
            .keyspace("data", || {
                let options = fjall::KeyspaceCreateOptions::default();
                if separate {
                    options.with_kv_separation(Some(fjall::KvSeparationOptions::default()))
                } else {
                    options
                }
            })
            .expect("keyspace");
        let meta = db
            .keyspace("applied", fjall::KeyspaceCreateOptions::default)
            .expect("keyspace");
        Fjall { db, data, meta }
    }
}

impl Engine for Fjall {
    fn apply(&mut self, batch: &[(Vec<u8>, Vec<u8>)], applied: u64, sync: bool) {
        let mut wb = self.db.batch();
        for (k, v) in batch {
            wb.insert(&self.data, k.as_slice(), v.as_slice());
        }
        wb.insert(&self.meta, *b"applied", applied.to_be_bytes());
        wb.commit().expect("commit");
        if sync {
            self.db.persist(fjall::PersistMode::SyncAll).expect("persist");
        }
    }

    fn newest(&self, key: u64, ts: u64) -> Option<usize> {
        let prefix = key_prefix(key);
        let from = version_key(key, ts);
        let (k, v) = self
            .data
            .range(from.as_slice()..)
            .next()?
            .into_inner()
            .expect("entry");
        k.starts_with(&prefix).then(|| v.len())
    }

    fn scan(&self, key: u64, n: usize) -> usize {
        let from = key_prefix(key);
        self.data
            .range(from.as_slice()..)
            .take(n)
            .map(|e| e.into_inner().expect("entry").1.len())
            .count()
    }
}

fn open(engine: &str, dir: &Path, cache: usize, value_bytes: usize) -> Box<dyn Engine> {
    match engine {
        "redb" => Box::new(Redb::open(dir, cache)),
        "fjall" => Box::new(Fjall::open(dir, cache, value_bytes)),
        other => panic!("unknown engine {other}: redb or fjall"),
    }
}

fn rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("status");
    let kib: f64 = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .expect("VmRSS");
    kib / 1024.0
}

fn dir_bytes(path: &Path) -> u64 {
    let mut total = 0;
    for entry in std::fs::read_dir(path).expect("read dir").flatten() {
        let meta = entry.metadata().expect("metadata");
        total += if meta.is_dir() {
            dir_bytes(&entry.path())
        } else {
            meta.len()
        };
    }
    total
}

fn line(engine: &str, phase: &str, count: usize, took: Duration, extra: &str) {
    let secs = took.as_secs_f64();
    println!(
        "{engine:6} {phase:8} {count:>8} in {secs:7.2} s = {:>10.0}/s  rss {:7.1} MiB  {extra}",
        count as f64 / secs,
        rss_mib()
    );
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, engine, value_bytes, keys, puts, rest @ ..] = args.as_slice() else {
        eprintln!("usage: engine-bench redb|fjall VALUE_BYTES KEYS PUTS [CACHE_MIB]");
        std::process::exit(2);
    };
    let value_bytes: usize = value_bytes.parse().expect("VALUE_BYTES");
    let keys: u64 = keys.parse().expect("KEYS");
    let puts: usize = puts.parse().expect("PUTS");
    let cache = rest.first().map_or(64, |c| c.parse().expect("CACHE_MIB")) << 20;
    let base = std::env::var_os("ENGINE_BENCH_DIR").unwrap_or_else(|| ".".into());
    let dir = tempfile::tempdir_in(base).expect("temp dir");
    let mut rng = SmallRng::seed_from_u64(7);
    let mut value = vec![0u8; value_bytes];

    let mut store = open(engine, dir.path(), cache, value_bytes);
    let start = Instant::now();
    let mut ts = 0u64;
    let mut batch = Vec::with_capacity(BATCH);
    for round in 0..puts.div_ceil(BATCH) {
        batch.clear();
        for _ in 0..BATCH {
            ts += 1;
            rng.fill(&mut value[..]);
            batch.push((version_key(rng.random_range(0..keys), ts), value.clone()));
        }
        store.apply(&batch, round as u64, round % SYNC_EVERY == SYNC_EVERY - 1);
    }
    store.apply(&[], u64::MAX, true);
    let took = start.elapsed();
    let written = (puts * value_bytes) as f64 / (1 << 20) as f64;
    line(
        engine,
        "put",
        puts,
        took,
        &format!(
            "{:.1} MiB/s, {:.0} MiB on disk for {written:.0} MiB written",
            written / took.as_secs_f64(),
            dir_bytes(dir.path()) as f64 / (1 << 20) as f64
        ),
    );

    let start = Instant::now();
    let mut found = 0;
    for _ in 0..READS {
        let at = rng.random_range(1..=ts);
        found += store.newest(rng.random_range(0..keys), at).is_some() as usize;
    }
    line(engine, "get", READS, start.elapsed(), &format!("{found} found"));

    let start = Instant::now();
    let mut seen = 0;
    for _ in 0..SCANS {
        seen += store.scan(rng.random_range(0..keys), SCAN_LEN);
    }
    line(engine, "scan100", SCANS, start.elapsed(), &format!("{seen} entries"));

    drop(store);
    let start = Instant::now();
    let store = open(engine, dir.path(), cache, value_bytes);
    let reopened = start.elapsed();
    let found = store.newest(0, ts).is_some();
    line(engine, "reopen", 1, reopened, &format!("key 0 found: {found}"));
}
