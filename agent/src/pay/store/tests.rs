//! Store tests: recovery at every torn offset, compaction, group commit, locking.

use super::log::{crc32c, encode_record, header};
use super::*;
use std::sync::atomic::AtomicUsize;

/// Minimal temp dir (no deps), removed on drop.
struct TempDir(PathBuf);
impl TempDir {
    fn new() -> TempDir {
        static N: AtomicUsize = AtomicUsize::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let p = std::env::temp_dir().join(format!("vstore-test-{}-{n}", std::process::id()));
        let _ = fs::remove_dir_all(&p);
        TempDir(p)
    }
}
impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
}

fn cfg(sync: SyncMode) -> StoreConfig {
    StoreConfig { sync, ..StoreConfig::default() }
}

fn ent(key: &str, value: u128, payload: &[u8]) -> Entry {
    Entry { key: key.as_bytes().to_vec(), value, payload: payload.to_vec() }
}

fn log_files(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("log-"))
        .collect();
    v.sort();
    v
}

#[test]
fn crc32c_known_vector() {
    assert_eq!(crc32c(b"123456789"), 0xE306_9283);
    assert_eq!(crc32c(b""), 0);
}

#[test]
fn store_is_send_sync_clone() {
    fn check<T: Send + Sync + Clone>() {}
    check::<Store>();
}

#[test]
fn roundtrip_monotonic_and_reopen() {
    let d = TempDir::new();
    let s = Store::open(&d.0, cfg(SyncMode::Full)).unwrap();
    assert_eq!(s.get(b"a"), None);
    s.put(ent("a", 5, b"five")).unwrap();
    s.put(ent("b", 1, b"")).unwrap();
    assert_eq!(s.get(b"a"), Some(ent("a", 5, b"five")));
    s.put(ent("a", 7, b"seven")).unwrap();
    assert_eq!(s.get(b"a").unwrap().value, 7);
    s.put(ent("a", 3, b"three")).unwrap(); // lower: acked, no effect
    assert_eq!(s.get(b"a"), Some(ent("a", 7, b"seven")));
    s.put(ent("a", 7, b"seven-b")).unwrap(); // equal: later wins
    assert_eq!(s.get(b"a"), Some(ent("a", 7, b"seven-b")));
    assert!(matches!(s.put(ent("", 1, b"")), Err(StoreError::TooLarge)));
    let long = Entry { key: vec![1; MAX_KEY + 1], value: 1, payload: vec![] };
    assert!(matches!(s.put(long), Err(StoreError::TooLarge)));
    let big = Entry { key: vec![1; MAX_KEY], value: 1, payload: vec![0; MAX_PAYLOAD + 1] };
    assert!(matches!(s.put(big), Err(StoreError::TooLarge)));
    let max = Entry { key: vec![2; MAX_KEY], value: u128::MAX, payload: vec![9; MAX_PAYLOAD] };
    s.put(max.clone()).unwrap();
    let before = s.entries();
    s.close();
    let s = Store::open(&d.0, cfg(SyncMode::Full)).unwrap();
    assert_eq!(s.entries(), before);
    assert_eq!(s.get(&max.key), Some(max));
    assert_eq!(s.get(b"a"), Some(ent("a", 7, b"seven-b")));
    assert_eq!(s.stats().truncated_bytes, 0);
}

#[test]
fn torn_tail_is_truncated_and_store_keeps_working() {
    let d = TempDir::new();
    let s = Store::open(&d.0, cfg(SyncMode::Full)).unwrap();
    for i in 0..3 {
        s.put(ent(&format!("k{i}"), i, b"p")).unwrap();
    }
    drop(s);
    let path = d.0.join("log-0.bin");
    let good_len = fs::metadata(&path).unwrap().len();
    let mut f = OpenOptions::new().append(true).open(&path).unwrap();
    f.write_all(&[0xFF, 0x00, 0x00, 0x00, 1, 2, 3]).unwrap();
    drop(f);
    let s = Store::open(&d.0, cfg(SyncMode::Full)).unwrap();
    assert_eq!(s.entries().len(), 3);
    assert_eq!(s.stats().truncated_bytes, 7);
    assert_eq!(fs::metadata(&path).unwrap().len(), good_len);
    s.put(ent("k3", 3, b"p")).unwrap();
    drop(s);
    // Cut the last record in the middle.
    let len = fs::metadata(&path).unwrap().len();
    OpenOptions::new().write(true).open(&path).unwrap().set_len(len - 3).unwrap();
    let s = Store::open(&d.0, cfg(SyncMode::Full)).unwrap();
    assert_eq!(s.entries().len(), 3);
    assert_eq!(s.get(b"k3"), None);
    assert_eq!(fs::metadata(&path).unwrap().len(), good_len);
    s.put(ent("k4", 4, b"q")).unwrap();
    drop(s);
    let s = Store::open(&d.0, cfg(SyncMode::Full)).unwrap();
    let keys: Vec<Vec<u8>> = s.entries().into_iter().map(|e| e.key).collect();
    assert_eq!(keys, vec![b"k0".to_vec(), b"k1".to_vec(), b"k2".to_vec(), b"k4".to_vec()]);
    assert_eq!(s.stats().truncated_bytes, 0);
}

#[test]
fn bad_header_is_corrupt_not_panic() {
    let d = TempDir::new();
    fs::create_dir_all(&d.0).unwrap();
    fs::write(d.0.join("log-0.bin"), b"NOTMAGIC\0\0\0\0\0\0\0\0").unwrap();
    assert!(matches!(Store::open(&d.0, cfg(SyncMode::None)), Err(StoreError::Corrupt { offset: 0, .. })));
    fs::write(d.0.join("log-0.bin"), header(9)).unwrap();
    assert!(matches!(Store::open(&d.0, cfg(SyncMode::None)), Err(StoreError::Corrupt { offset: 8, .. })));
}

#[test]
fn compaction_keeps_max_per_key_and_one_file() {
    let d = TempDir::new();
    let c = StoreConfig { compact_after_bytes: 2048, ..cfg(SyncMode::None) };
    let s = Store::open(&d.0, c).unwrap();
    let mut rng = Rng(0x1234_5678);
    let mut expected: HashMap<Vec<u8>, u128> = HashMap::new();
    for _ in 0..1500 {
        let k = format!("chan-{}", rng.next() % 16);
        let v = (rng.next() % 10_000) as u128;
        s.put(ent(&k, v, &v.to_le_bytes())).unwrap();
        let m = expected.entry(k.into_bytes()).or_insert(0);
        *m = (*m).max(v);
    }
    assert!(s.stats().compactions > 0);
    drop(s);
    let files = log_files(&d.0);
    assert_eq!(files.len(), 1, "{files:?}");
    assert_ne!(files[0], "log-0.bin");
    let s = Store::open(&d.0, c).unwrap();
    let got: HashMap<Vec<u8>, u128> = s.entries().into_iter().map(|e| (e.key, e.value)).collect();
    assert_eq!(got, expected);
    // Leftover tmp and older generation are cleaned up at open.
    drop(s);
    fs::write(d.0.join("log-0.bin"), header(0)).unwrap();
    fs::write(d.0.join("log-999.bin.tmp"), b"junk").unwrap();
    let s = Store::open(&d.0, c).unwrap();
    assert_eq!(log_files(&d.0), files);
    assert_eq!(s.entries().len(), expected.len());
}

#[test]
fn concurrent_submits_group_commit() {
    let d = TempDir::new();
    let s = Store::open(&d.0, cfg(SyncMode::Full)).unwrap();
    let workers: Vec<_> = (0..8u64)
        .map(|t| {
            let s = s.clone();
            thread::spawn(move || {
                let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ (t + 1));
                let mut max: HashMap<Vec<u8>, u128> = HashMap::new();
                let (tx, rx) = mpsc::channel();
                for _ in 0..2000 {
                    let key = vec![b'k', (rng.next() % 64) as u8];
                    let v = (rng.next() % 1_000_000) as u128;
                    let m = max.entry(key.clone()).or_insert(0);
                    *m = (*m).max(v);
                    let tx = tx.clone();
                    let e = Entry { key, value: v, payload: v.to_le_bytes().to_vec() };
                    s.submit(
                        e,
                        Box::new(move |r| {
                            let _ = tx.send(r.is_ok());
                        }),
                    );
                }
                drop(tx);
                assert_eq!(rx.iter().filter(|ok| *ok).count(), 2000);
                max
            })
        })
        .collect();
    let mut expected: HashMap<Vec<u8>, u128> = HashMap::new();
    for w in workers {
        for (k, v) in w.join().unwrap() {
            let m = expected.entry(k).or_insert(0);
            *m = (*m).max(v);
        }
    }
    let st = s.stats();
    assert!(st.batches >= 1 && st.batches < st.entries, "{st:?}");
    let got: HashMap<Vec<u8>, u128> = s.entries().into_iter().map(|e| (e.key, e.value)).collect();
    assert_eq!(got, expected);
    drop(s);
    let s = Store::open(&d.0, cfg(SyncMode::Full)).unwrap();
    let got: HashMap<Vec<u8>, u128> = s.entries().into_iter().map(|e| (e.key, e.value)).collect();
    assert_eq!(got, expected);
}

#[test]
fn blocking_puts_share_fsyncs() {
    let d = TempDir::new();
    let s = Store::open(&d.0, cfg(SyncMode::Full)).unwrap();
    let workers: Vec<_> = (0..8u8)
        .map(|t| {
            let s = s.clone();
            thread::spawn(move || {
                for v in 1..=50u128 {
                    s.put(Entry { key: vec![t], value: v, payload: vec![] }).unwrap();
                }
            })
        })
        .collect();
    for w in workers {
        w.join().unwrap();
    }
    let st = s.stats();
    assert_eq!(st.entries, 400);
    assert!(st.batches < st.entries, "{st:?}");
    assert!((0..8u8).all(|t| s.get(&[t]).map(|e| e.value) == Some(50)));
}

#[test]
fn second_open_is_locked_until_drop() {
    let d = TempDir::new();
    let s = Store::open(&d.0, cfg(SyncMode::None)).unwrap();
    let s2 = s.clone();
    assert!(matches!(Store::open(&d.0, cfg(SyncMode::None)), Err(StoreError::Locked)));
    drop(s);
    assert!(matches!(Store::open(&d.0, cfg(SyncMode::None)), Err(StoreError::Locked)));
    drop(s2);
    let s = Store::open(&d.0, cfg(SyncMode::None)).unwrap();
    s.put(ent("x", 1, b"")).unwrap();
}

#[test]
fn close_rejects_other_clones_and_busy_backpressure() {
    let d = TempDir::new();
    let s = Store::open(&d.0, cfg(SyncMode::None)).unwrap();
    let s2 = s.clone();
    s.close();
    assert!(matches!(s2.put(ent("x", 1, b"")), Err(StoreError::Closed)));
    drop(s2);
    let s = Store::open(&d.0, StoreConfig { max_pending: 0, ..cfg(SyncMode::None) }).unwrap();
    assert!(matches!(s.put(ent("x", 1, b"")), Err(StoreError::Busy)));
}

#[test]
fn crash_at_every_offset_of_last_record() {
    let src = TempDir::new();
    let s = Store::open(&src.0, cfg(SyncMode::Full)).unwrap();
    let all: Vec<Entry> = (0..5).map(|i| ent(&format!("key-{i}"), 100 + i, b"payload!")).collect();
    for e in &all {
        s.put(e.clone()).unwrap();
    }
    drop(s);
    let bytes = fs::read(src.0.join("log-0.bin")).unwrap();
    let mut last = Vec::new();
    encode_record(&mut last, &all[4]);
    let start = bytes.len() - last.len();
    assert_eq!(&bytes[start..], &last[..]);
    let check = |data: &[u8]| {
        let d = TempDir::new();
        fs::create_dir_all(&d.0).unwrap();
        let path = d.0.join("log-0.bin");
        fs::write(&path, data).unwrap();
        let s = Store::open(&d.0, cfg(SyncMode::None)).unwrap();
        assert_eq!(s.entries(), all[..4].to_vec());
        assert_eq!(fs::metadata(&path).unwrap().len(), start as u64);
    };
    for cut in start..bytes.len() {
        check(&bytes[..cut]);
    }
    for i in start..bytes.len() {
        let mut flipped = bytes.clone();
        flipped[i] ^= 0x5A;
        check(&flipped);
    }
}

#[test]
fn fuzz_random_log_bodies_never_panic() {
    let mut rng = Rng(0xDEAD_BEEF_CAFE_F00D);
    for iter in 0..300 {
        let d = TempDir::new();
        fs::create_dir_all(&d.0).unwrap();
        let mut bytes = header(0);
        let mut expected = Vec::new();
        if iter % 2 == 0 {
            let n = rng.next() % 600;
            bytes.extend((0..n).map(|_| rng.next() as u8));
        } else {
            // Valid records, then one corrupted byte: exactly the records before it survive.
            let mut ends = Vec::new();
            let recs: Vec<Entry> = (0..1 + rng.next() % 8)
                .map(|i| Entry {
                    key: format!("k{i}").into_bytes(),
                    value: rng.next() as u128,
                    payload: (0..rng.next() % 40).map(|_| rng.next() as u8).collect(),
                })
                .collect();
            for e in &recs {
                encode_record(&mut bytes, e);
                ends.push(bytes.len());
            }
            let p = HEADER_LEN + (rng.next() as usize % (bytes.len() - HEADER_LEN));
            bytes[p] ^= 1 + (rng.next() % 255) as u8;
            expected = recs.into_iter().zip(&ends).filter(|(_, &end)| end <= p).map(|(e, _)| e).collect();
        }
        fs::write(d.0.join("log-0.bin"), &bytes).unwrap();
        let s = Store::open(&d.0, cfg(SyncMode::None)).unwrap();
        if iter % 2 == 1 {
            assert_eq!(s.entries(), expected);
        }
        s.put(ent("after", 1, b"ok")).unwrap();
    }
}
