//! The on-disk log: record encoding, CRC-32C, recovery of a torn tail, compaction.

use super::*;

pub(super) struct Log {
    dir: PathBuf,
    path: PathBuf,
    generation: u64,
    file: File,
    len: u64,
    compact_at: u64,
    sync: SyncMode,
    _lock: Arc<File>,
}

impl Log {
    /// Appends one batch (only the per-key winners) with one write and one fsync, then
    /// publishes it. Entries already beaten by a durable value are acked without writing.
    pub(super) fn commit(&mut self, shared: &Shared, batch: Vec<Entry>) -> Result<(), StoreError> {
        let count = batch.len() as u64;
        let mut winners: HashMap<Vec<u8>, Entry> = HashMap::new();
        {
            let durable = shared.durable();
            for e in batch {
                let cur = winners.get(&e.key).or_else(|| durable.get(&e.key));
                if cur.is_none_or(|c| e.value >= c.value) {
                    winners.insert(e.key.clone(), e);
                }
            }
        }
        let mut buf = Vec::new();
        for e in winners.values() {
            encode_record(&mut buf, e);
        }
        if !buf.is_empty() {
            self.file.write_all(&buf)?;
            if self.sync == SyncMode::Full {
                self.file.sync_data()?;
            }
            self.len += buf.len() as u64;
            shared.batches.fetch_add(1, Ordering::Relaxed);
            shared.bytes.fetch_add(buf.len() as u64, Ordering::Relaxed);
        }
        let mut durable = shared.durable.write().unwrap_or_else(PoisonError::into_inner);
        durable.extend(winners);
        shared.entries.fetch_add(count, Ordering::Relaxed);
        Ok(())
    }

    /// Rewrites the durable map into the next generation. Failures before the rename are
    /// harmless (old log stays authoritative; retried later); after the rename only an
    /// fsync of the directory can fail, which is fatal since we must not append to the old log.
    pub(super) fn maybe_compact(&mut self, shared: &Shared) -> Result<(), StoreError> {
        let Some(generation) = self.generation.checked_add(1) else {
            return Ok(());
        };
        if self.len <= self.compact_at {
            return Ok(());
        }
        let mut buf = header(generation);
        {
            let durable = shared.durable();
            for e in durable.values() {
                encode_record(&mut buf, e);
            }
        }
        let after = shared.config.compact_after_bytes;
        let Ok((file, path)) = stage_generation(&self.dir, generation, &buf, self.sync) else {
            self.compact_at = self.len.saturating_add(after);
            return Ok(());
        };
        if self.sync == SyncMode::Full {
            sync_dir(&self.dir)?;
        }
        self.file = file;
        let old = std::mem::replace(&mut self.path, path);
        let _ = fs::remove_file(old); // leftovers are deleted at the next open
        self.generation = generation;
        self.len = buf.len() as u64;
        self.compact_at = after.max(self.len.saturating_mul(2));
        shared.compactions.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

pub(super) fn header(generation: u64) -> Vec<u8> {
    let mut h = Vec::with_capacity(HEADER_LEN);
    h.extend_from_slice(MAGIC);
    h.extend_from_slice(&generation.to_le_bytes());
    h
}

/// Writes `bytes` to `log-<gen>.bin.tmp`, fsyncs, renames to `log-<gen>.bin`. Returns the
/// handle (positioned at the end, ready for appends) and final path. Caller syncs the dir.
fn stage_generation(dir: &Path, generation: u64, bytes: &[u8], sync: SyncMode) -> io::Result<(File, PathBuf)> {
    let tmp = dir.join(format!("log-{generation}.bin.tmp"));
    let dst = dir.join(format!("log-{generation}.bin"));
    let result = write_and_rename(&tmp, &dst, bytes, sync);
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result.map(|f| (f, dst))
}

fn write_and_rename(tmp: &Path, dst: &Path, bytes: &[u8], sync: SyncMode) -> io::Result<File> {
    let mut f = OpenOptions::new().read(true).write(true).create(true).truncate(true).open(tmp)?;
    f.write_all(bytes)?;
    if sync == SyncMode::Full {
        f.sync_data()?;
    }
    fs::rename(tmp, dst)?;
    Ok(f)
}

#[cfg(unix)]
fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(not(unix))]
fn sync_dir(_dir: &Path) -> io::Result<()> {
    Ok(())
}

/// `log-<digits><suffix>` -> generation.
fn parse_gen(name: &str, suffix: &str) -> Option<u64> {
    let digits = name.strip_prefix("log-")?.strip_suffix(suffix)?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

pub(super) type Recovered = (Log, HashMap<Vec<u8>, Entry>, u64);

pub(super) fn recover(dir: &Path, cfg: &StoreConfig, lock: Arc<File>) -> Result<Recovered, StoreError> {
    let mut logs: Vec<(u64, PathBuf)> = Vec::new();
    for item in fs::read_dir(dir)? {
        let item = item?;
        let name = item.file_name();
        let Some(name) = name.to_str() else { continue };
        if parse_gen(name, ".bin.tmp").is_some() {
            fs::remove_file(item.path())?; // unfinished compaction or initial creation
        } else if let Some(generation) = parse_gen(name, ".bin") {
            logs.push((generation, item.path()));
        }
    }
    logs.sort();
    let make_log = |file, path, generation, len: u64| Log {
        dir: dir.to_path_buf(),
        path,
        generation,
        file,
        len,
        compact_at: cfg.compact_after_bytes.max(len.saturating_mul(2)),
        sync: cfg.sync,
        _lock: lock,
    };
    let Some((generation, path)) = logs.pop() else {
        let (file, path) = stage_generation(dir, 0, &header(0), cfg.sync)?;
        if cfg.sync == SyncMode::Full {
            sync_dir(dir)?;
        }
        return Ok((make_log(file, path, 0, HEADER_LEN as u64), HashMap::new(), 0));
    };
    let mut file = OpenOptions::new().read(true).append(true).open(&path)?;
    let mut data = Vec::new();
    file.read_to_end(&mut data)?;
    let (map, pos) = scan(&data, generation)?;
    let truncated = (data.len() - pos) as u64;
    if truncated > 0 {
        file.set_len(pos as u64)?;
        if cfg.sync == SyncMode::Full {
            file.sync_data()?;
        }
    }
    for (_, old) in logs {
        let _ = fs::remove_file(old); // newest generation is complete; older ones are garbage
    }
    Ok((make_log(file, path, generation, pos as u64), map, truncated))
}

/// Reads a whole log file of generation `generation`: each key's highest
/// value, and where the valid records end (a torn or corrupt tail starts
/// there and is cut off by the caller). Pure, so it can be fuzzed.
pub(super) fn scan(data: &[u8], generation: u64) -> Result<(HashMap<Vec<u8>, Entry>, usize), StoreError> {
    if data.len() < HEADER_LEN || data[..8] != MAGIC[..] {
        return Err(StoreError::Corrupt { offset: 0, reason: "bad log header" });
    }
    if data[8..HEADER_LEN] != generation.to_le_bytes() {
        return Err(StoreError::Corrupt { offset: 8, reason: "generation does not match file name" });
    }
    let mut map: HashMap<Vec<u8>, Entry> = HashMap::new();
    let mut pos = HEADER_LEN;
    while let Some((e, used)) = data.get(pos..).and_then(decode_record) {
        pos += used;
        if map.get(&e.key).is_none_or(|c| e.value >= c.value) {
            map.insert(e.key.clone(), e);
        }
    }
    Ok((map, pos))
}

pub(super) fn encode_record(buf: &mut Vec<u8>, e: &Entry) {
    // Sizes were validated in `submit` (or come from validated, decoded records).
    let body_len = 2 + e.key.len() + 16 + 4 + e.payload.len();
    buf.extend_from_slice(&(body_len as u32).to_le_bytes());
    let crc_at = buf.len();
    buf.extend_from_slice(&[0; 4]);
    let start = buf.len();
    buf.extend_from_slice(&(e.key.len() as u16).to_le_bytes());
    buf.extend_from_slice(&e.key);
    buf.extend_from_slice(&e.value.to_le_bytes());
    buf.extend_from_slice(&(e.payload.len() as u32).to_le_bytes());
    buf.extend_from_slice(&e.payload);
    let crc = crc32c(&buf[start..]);
    buf[crc_at..start].copy_from_slice(&crc.to_le_bytes());
}

fn take<const N: usize>(b: &[u8], at: usize) -> Option<[u8; N]> {
    b.get(at..at.checked_add(N)?)?.try_into().ok()
}

/// Decodes one record at the start of `data`; `None` = torn/corrupt. Never panics.
pub(super) fn decode_record(data: &[u8]) -> Option<(Entry, usize)> {
    let len = u32::from_le_bytes(take(data, 0)?) as usize;
    let crc = u32::from_le_bytes(take(data, 4)?);
    if !(MIN_BODY..=MAX_BODY).contains(&len) {
        return None;
    }
    let body = data.get(8..8 + len)?;
    if crc32c(body) != crc {
        return None;
    }
    let klen = u16::from_le_bytes(take(body, 0)?) as usize;
    if klen == 0 || klen > MAX_KEY {
        return None;
    }
    let key = body.get(2..2 + klen)?.to_vec();
    let value = u128::from_le_bytes(take(body, 2 + klen)?);
    let plen = u32::from_le_bytes(take(body, 18 + klen)?) as usize;
    if plen > MAX_PAYLOAD || 22 + klen + plen != len {
        return None;
    }
    let payload = body.get(22 + klen..)?.to_vec();
    Some((Entry { key, value, payload }, 8 + len))
}

/// CRC-32C (Castagnoli, reflected poly 0x82F63B78), table built at compile time.
const CRC_TABLE: [u32; 256] = {
    let mut table = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 { (c >> 1) ^ 0x82F6_3B78 } else { c >> 1 };
            k += 1;
        }
        table[i] = c;
        i += 1;
    }
    table
};

pub(super) fn crc32c(data: &[u8]) -> u32 {
    let mut c = !0u32;
    for &b in data {
        c = CRC_TABLE[((c ^ b as u32) & 0xff) as usize] ^ (c >> 8);
    }
    !c
}
