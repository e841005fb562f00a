//! What each subcommand does.

use crate::admin::{self, Backend};
use crate::cli::{Cli, Command, CreateOpts, CsiArgs, MountArgs, SnapshotCommand, VolumeCommand};
use crate::errors::CliError;
use crate::output::{self, format_timestamp, Table};
use crate::size::{format_size, parse_size};
use anyhow::{bail, Context, Result};
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use tessera_store::{Pool, StoreError, VolumeInfo, VolumeOptions};

/// Longest volume name the CLI accepts.
pub const MAX_VOLUME_NAME: usize = 128;

pub fn run(cli: &Cli) -> Result<()> {
    let data_dir = data_dir(cli.data_dir.as_deref())?;
    match &cli.command {
        Command::Volume(cmd) => volume(cli.json, &data_dir, cmd),
        Command::Snapshot(cmd) => snapshot(cli.json, &data_dir, cmd),
        Command::Clone { source, name } => clone(cli.json, &data_dir, source, name),
        Command::Mount(args) => mount(&data_dir, args),
        Command::Csi(args) => csi(&data_dir, args),
        Command::Usage => usage(cli.json, &data_dir),
        Command::Gc => gc(cli.json, &data_dir),
        Command::Fsck {
            repair,
            verify_data,
        } => fsck(cli.json, &data_dir, *repair, *verify_data),
    }
}

/// The pool directory: the flag or `$TESSERA_DATA_DIR` (clap reads both), else
/// `/var/lib/tessera` for root, else `$XDG_DATA_HOME/tessera`, else `~/.local/share/tessera`.
pub fn data_dir(given: Option<&Path>) -> Result<PathBuf> {
    if let Some(dir) = given.filter(|d| !d.as_os_str().is_empty()) {
        return Ok(dir.to_path_buf());
    }
    if nix::unistd::geteuid().is_root() {
        return Ok(PathBuf::from("/var/lib/tessera"));
    }
    if let Some(xdg) = std::env::var_os("XDG_DATA_HOME").map(PathBuf::from) {
        // The XDG spec says relative paths are invalid and must be ignored.
        if xdg.is_absolute() {
            return Ok(xdg.join("tessera"));
        }
    }
    match std::env::var_os("HOME").filter(|h| !h.is_empty()) {
        Some(home) => Ok(PathBuf::from(home).join(".local/share/tessera")),
        None => bail!(
            "cannot choose a data directory: HOME is not set; pass --data-dir or set TESSERA_DATA_DIR"
        ),
    }
}

fn open_pool(dir: &Path) -> Result<Pool> {
    Pool::open(dir).with_context(|| format!("opening pool {}", dir.display()))
}

/// How often a serving process checks whether the background GC should run.
const CLEANER_EVERY: std::time::Duration = std::time::Duration::from_secs(60);

/// A pool for a long-running server (mount, CSI plugin): with the background
/// cleaner, which runs GC when garbage passes a share of the pool.
fn open_serving_pool(dir: &Path) -> Result<Pool> {
    let pool = open_pool(dir)?;
    pool.start_cleaner(
        CLEANER_EVERY,
        tessera_store::AUTO_GC_SHARE,
        tessera_store::AUTO_GC_MIN,
    );
    Ok(pool)
}

/// The pool's admin server if one holds the pool, else the pool itself.
fn backend(dir: &Path) -> Result<Backend> {
    Backend::open(dir)
}

/// Checks a volume name the way the store does: 1–128 characters from `a-z 0-9 . _ -`,
/// not starting with `.` or `-` (so it is never a hidden file or mistaken for an option).
/// Checked here too so the message can say what exactly is wrong.
pub fn validate_volume_name(name: &str) -> Result<(), CliError> {
    let problem = if name.is_empty() {
        Some("it is empty".to_string())
    } else if name.len() > MAX_VOLUME_NAME {
        Some(format!(
            "it is {} bytes long (at most {MAX_VOLUME_NAME})",
            name.len()
        ))
    } else if name.starts_with(['.', '-']) {
        Some("it must not start with '.' or '-'".to_string())
    } else {
        name.chars()
            .find(|c| {
                !(c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-'))
            })
            .map(|c| format!("it contains {c:?} (allowed: a-z 0-9 . _ -)"))
    };
    match problem {
        None => Ok(()),
        Some(p) => Err(CliError::invalid(format!(
            "invalid volume name {name:?}: {p}"
        ))),
    }
}

/// Turns `--size/--chunk-size/--compression` into store options, or an invalid-input error.
pub fn volume_options(opts: &CreateOpts) -> Result<VolumeOptions, CliError> {
    let capacity = parse_size(&opts.size).map_err(CliError::invalid)?;
    if capacity == 0 {
        return Err(CliError::invalid(
            "invalid size: a volume needs a capacity above 0 bytes",
        ));
    }
    let chunk =
        parse_size(&opts.chunk_size).map_err(|e| CliError::invalid(format!("chunk size: {e}")))?;
    let (min, max) = (
        tessera_store::MIN_CHUNK_SIZE as u64,
        tessera_store::MAX_CHUNK_SIZE as u64,
    );
    if !chunk.is_power_of_two() || chunk < min || chunk > max {
        return Err(CliError::invalid(format!(
            "invalid chunk size {:?} ({chunk} bytes): it must be a power of two from {} to {}",
            opts.chunk_size,
            format_size(min),
            format_size(max)
        )));
    }
    Ok(VolumeOptions {
        capacity,
        chunk_size: chunk as u32,
        compression: opts.compression.into(),
    })
}

/// A volume as `--json` prints it.
#[derive(Debug, Serialize)]
pub struct VolumeJson<'a> {
    pub name: &'a str,
    pub id: u64,
    /// Capacity (quota) in bytes.
    pub capacity: u64,
    /// Logical bytes held.
    pub used: u64,
    pub inodes: u64,
    pub chunk_size: u32,
    pub compression: String,
    /// Creation time, seconds since the Unix epoch.
    pub created: i64,
    pub read_only: bool,
    pub snapshot_of: Option<&'a str>,
}

impl<'a> From<&'a VolumeInfo> for VolumeJson<'a> {
    fn from(v: &'a VolumeInfo) -> Self {
        VolumeJson {
            name: &v.name,
            id: v.id,
            capacity: v.capacity,
            used: v.used,
            inodes: v.inodes,
            chunk_size: v.chunk_size,
            compression: v.compression.to_string(),
            created: v.created.secs,
            read_only: v.read_only,
            snapshot_of: v.snapshot_of.as_deref(),
        }
    }
}

fn volume(json: bool, dir: &Path, cmd: &VolumeCommand) -> Result<()> {
    match cmd {
        VolumeCommand::Create { name, opts } => {
            validate_volume_name(name)?;
            let options = volume_options(opts)?;
            let mut pool = backend(dir)?;
            let info = pool
                .create_volume(name, options)
                .with_context(|| format!("creating volume {name}"))?;
            if json {
                output::json(&VolumeJson::from(&info))
            } else {
                println!(
                    "created volume {} (capacity {}, chunk size {}, compression {})",
                    info.name,
                    format_size(info.capacity),
                    format_size(info.chunk_size as u64),
                    info.compression
                );
                Ok(())
            }
        }
        VolumeCommand::List => {
            let mut pool = backend(dir)?;
            let vols = pool.list_volumes().context("listing volumes")?;
            if json {
                let list: Vec<VolumeJson> = vols.iter().map(VolumeJson::from).collect();
                return output::json(&list);
            }
            let mut table = Table::new(&["NAME", "SIZE", "USED", "CHUNK", "COMPRESSION", "INODES"]);
            for v in &vols {
                let name = if v.read_only {
                    format!("{} (snapshot)", v.name)
                } else {
                    v.name.clone()
                };
                table.row(vec![
                    name,
                    format_size(v.capacity),
                    format_size(v.used),
                    format_size(v.chunk_size as u64),
                    v.compression.to_string(),
                    v.inodes.to_string(),
                ]);
            }
            if vols.is_empty() {
                eprintln!(
                    "no volumes in {} (create one with `tessera volume create NAME`)",
                    dir.display()
                );
            } else {
                print!("{table}");
            }
            Ok(())
        }
        VolumeCommand::Info { name } => {
            let mut pool = backend(dir)?;
            let info = pool
                .volume_info(name)
                .with_context(|| format!("volume {name}"))?;
            if json {
                return output::json(&VolumeJson::from(&info));
            }
            print_info(&info);
            Ok(())
        }
        VolumeCommand::Resize { name, size } => {
            let capacity = parse_size(size).map_err(CliError::invalid)?;
            let mut pool = backend(dir)?;
            let info = pool
                .resize_volume(name, capacity)
                .with_context(|| format!("resizing volume {name} to {}", format_size(capacity)))?;
            if json {
                output::json(&VolumeJson::from(&info))
            } else {
                println!(
                    "resized volume {} to {} ({} used)",
                    info.name,
                    format_size(info.capacity),
                    format_size(info.used)
                );
                Ok(())
            }
        }
        VolumeCommand::Restore { name, snapshot } => {
            let mut pool = backend(dir)?;
            let info = pool.restore_volume(name, snapshot).with_context(|| {
                format!("restoring volume {name} from snapshot {name}@{snapshot}")
            })?;
            if json {
                output::json(&VolumeJson::from(&info))
            } else {
                println!("restored volume {name} to snapshot {name}@{snapshot}");
                Ok(())
            }
        }
        VolumeCommand::Delete { name } => {
            let mut pool = backend(dir)?;
            pool.delete_volume(name)
                .with_context(|| format!("deleting volume {name}"))?;
            if json {
                output::json(&serde_json::json!({ "deleted": name }))
            } else {
                println!("deleted volume {name} (run `tessera gc` to reclaim unreferenced chunks)");
                Ok(())
            }
        }
    }
}

fn print_info(v: &VolumeInfo) {
    let rows: Vec<(&str, String)> = vec![
        ("name", v.name.clone()),
        ("id", v.id.to_string()),
        (
            "capacity",
            format!("{} ({} bytes)", format_size(v.capacity), v.capacity),
        ),
        (
            "used",
            format!("{} ({} bytes)", format_size(v.used), v.used),
        ),
        ("inodes", v.inodes.to_string()),
        ("chunk size", format_size(v.chunk_size as u64)),
        ("compression", v.compression.to_string()),
        ("created", format_timestamp(v.created.secs)),
        (
            "read-only",
            if v.read_only { "yes" } else { "no" }.to_string(),
        ),
    ];
    for (k, val) in rows {
        println!("{:<12} {val}", format!("{k}:"));
    }
    if let Some(origin) = &v.snapshot_of {
        println!("{:<12} {origin}", "snapshot of:");
    }
}

fn mount(dir: &Path, args: &MountArgs) -> Result<()> {
    let name = &args.name;
    // Check everything we can before touching the pool.
    let options = if args.create {
        validate_volume_name(name)?;
        Some(volume_options(&args.create_opts())?)
    } else {
        None
    };
    match std::fs::metadata(&args.dir) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => {
            return Err(CliError::invalid(format!(
                "mount point {} is not a directory",
                args.dir.display()
            ))
            .into())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(CliError::not_found(format!(
                "mount point {} does not exist (create it with mkdir)",
                args.dir.display()
            ))
            .into())
        }
        // Anything else (e.g. a dead FUSE mount left behind) is for tessera-fs to judge or clean.
        Err(_) => {}
    }

    let pool = open_serving_pool(dir)?;
    if let Some(options) = options {
        match pool.create_volume(name, options) {
            Ok(info) => tracing::info!(volume = %info.name, "created volume"),
            Err(StoreError::Exists(_)) => tracing::debug!(volume = %name, "volume exists"),
            Err(e) => return Err(e).with_context(|| format!("creating volume {name}")),
        }
    }
    let volume = pool
        .open_volume(name)
        .with_context(|| format!("opening volume {name}"))?;
    let admin = admin::serve(pool.clone(), dir).context("starting the admin API")?;
    let defaults = tessera_fs::mount::MountOptions::default();
    let opts = tessera_fs::mount::MountOptions {
        read_only: args.read_only || volume.is_read_only(),
        // 0 lets tessera-fs choose (one per CPU, at least 2).
        threads: args.threads.map_or(0, usize::from),
        // On for root by default (pods need it); non-root opts in with --allow-other.
        allow_other: args.allow_other || defaults.allow_other,
        fs_name: format!("tessera:{name}"),
    };
    // mount_foreground prints "tessera: mounted volume NAME at DIR" once the mount is live
    // and returns after SIGINT/SIGTERM/SIGHUP or an external unmount.
    tessera_fs::mount::mount_foreground(volume, &args.dir, &opts)
        .with_context(|| format!("mounting volume {name} on {}", args.dir.display()))?;
    drop(admin);
    pool.sync().context("syncing the pool after unmount")?;
    tracing::info!(volume = %name, "unmounted");
    Ok(())
}

fn csi(dir: &Path, args: &CsiArgs) -> Result<()> {
    let socket = tessera_csi::server::socket_path(&args.endpoint)
        .map_err(|e| CliError::invalid(e.to_string()))?;
    tessera_csi::ids::check_field("--node-id", &args.node_id)
        .map_err(|s| CliError::invalid(s.message().to_string()))?;
    if !args.kubelet_dir.is_dir() {
        return Err(CliError::not_found(format!(
            "kubelet directory {} does not exist",
            args.kubelet_dir.display()
        ))
        .into());
    }
    let credentials = match &args.credentials_file {
        Some(path) => {
            tessera_csi::Credentials::load(path).map_err(|e| CliError::invalid(e.to_string()))?
        }
        None => tessera_csi::Credentials::none(),
    };
    let mut dirs = BTreeMap::from([(tessera_csi::DEFAULT_POOL.to_string(), dir.to_path_buf())]);
    for spec in &args.pools {
        let Some((name, pool_dir)) = spec.split_once('=') else {
            return Err(CliError::invalid(format!("--pool {spec:?}: expected NAME=DIR")).into());
        };
        validate_volume_name(name).map_err(|e| {
            CliError::invalid(format!(
                "--pool {spec:?}: pool names follow volume names' rules: {e}"
            ))
        })?;
        if dirs
            .insert(name.to_string(), PathBuf::from(pool_dir))
            .is_some()
        {
            return Err(CliError::invalid(format!("--pool {name} is given twice")).into());
        }
    }
    let mut pools = BTreeMap::new();
    let mut admins = Vec::new();
    for (name, pool_dir) in &dirs {
        let pool = open_serving_pool(pool_dir)?;
        // Operators keep using the CLI on a pool the plugin holds.
        admins.push(admin::serve(pool.clone(), pool_dir).context("starting the admin API")?);
        pools.insert(name.clone(), pool);
    }
    let config = tessera_csi::Config {
        socket,
        node_id: args.node_id.clone(),
        kubelet_dir: args.kubelet_dir.clone(),
        credentials,
        pools,
        state_dir: dir.to_path_buf(),
        max_volumes: i64::from(args.max_volumes),
    };
    tessera_csi::serve(config).context("CSI plugin")?;
    drop(admins);
    Ok(())
}

/// `tessera usage --json`.
#[derive(Debug, Serialize)]
struct UsageJson<'a> {
    data_dir: &'a Path,
    physical_bytes: u64,
    unique_bytes: u64,
    logical_bytes: u64,
    chunks: u64,
    dedup_ratio: f64,
    compression_ratio: f64,
    segment_bytes: u64,
    live_bytes: u64,
    garbage_bytes: u64,
    volumes: &'a [tessera_store::VolumeUsage],
}

fn usage(json: bool, dir: &Path) -> Result<()> {
    let mut pool = backend(dir)?;
    let (u, vols) = pool.usage().context("computing pool usage")?;
    if json {
        return output::json(&UsageJson {
            data_dir: dir,
            physical_bytes: u.physical_bytes,
            unique_bytes: u.unique_bytes,
            logical_bytes: u.logical_bytes,
            chunks: u.chunks,
            dedup_ratio: u.dedup_ratio,
            compression_ratio: u.compression_ratio,
            segment_bytes: u.segment_bytes,
            live_bytes: u.live_bytes,
            garbage_bytes: u.garbage_bytes,
            volumes: &vols,
        });
    }
    println!("pool {}", dir.display());
    println!(
        "  logical bytes      {:>12}  (what the volumes and snapshots hold)",
        format_size(u.logical_bytes)
    );
    println!(
        "  unique bytes       {:>12}  (after dedup)",
        format_size(u.unique_bytes)
    );
    println!(
        "  physical bytes     {:>12}  (after compression)",
        format_size(u.physical_bytes)
    );
    println!("  chunks             {:>12}", u.chunks);
    println!("  dedup ratio        {:>11.2}x", u.dedup_ratio);
    println!("  compression ratio  {:>11.2}x", u.compression_ratio);
    println!(
        "  segment files      {:>12}  (chunk bodies on disk; small chunks live in the index)",
        format_size(u.segment_bytes)
    );
    println!(
        "  garbage            {:>12}  (deleted chunks still on disk: `tessera gc` reclaims them)",
        format_size(u.garbage_bytes)
    );
    if !vols.is_empty() {
        println!();
        let mut table = Table::new(&["VOLUME", "LOGICAL", "EXCLUSIVE", "SNAPSHOTS"]);
        for v in &vols {
            table.row(vec![
                v.name.clone(),
                format_size(v.logical_bytes),
                format_size(v.exclusive_bytes),
                if v.read_only {
                    "-".into()
                } else {
                    v.snapshots.to_string()
                },
            ]);
        }
        print!("{table}");
    }
    Ok(())
}

fn snapshot(json: bool, dir: &Path, cmd: &SnapshotCommand) -> Result<()> {
    let mut pool = backend(dir)?;
    match cmd {
        SnapshotCommand::Create { volume, snapshot } => {
            let info = pool
                .create_snapshot(volume, snapshot)
                .with_context(|| format!("creating snapshot {volume}@{snapshot}"))?;
            if json {
                output::json(&VolumeJson::from(&info))
            } else {
                println!("created snapshot {}", info.name);
                Ok(())
            }
        }
        SnapshotCommand::List { volume } => {
            let snaps = pool
                .list_snapshots(volume.as_deref())
                .context("listing snapshots")?;
            if json {
                let list: Vec<VolumeJson> = snaps.iter().map(VolumeJson::from).collect();
                return output::json(&list);
            }
            let mut table = Table::new(&["SNAPSHOT", "VOLUME", "USED", "CREATED"]);
            for s in &snaps {
                table.row(vec![
                    s.name.clone(),
                    s.snapshot_of.clone().unwrap_or_default(),
                    format_size(s.used),
                    format_timestamp(s.created.secs),
                ]);
            }
            if snaps.is_empty() {
                eprintln!("no snapshots");
            } else {
                print!("{table}");
            }
            Ok(())
        }
        SnapshotCommand::Info { name } => {
            let full = snapshot_name(name)?;
            let info = pool
                .volume_info(&full)
                .with_context(|| format!("snapshot {full}"))?;
            if json {
                return output::json(&VolumeJson::from(&info));
            }
            print_info(&info);
            Ok(())
        }
        SnapshotCommand::Delete { name } => {
            let full = snapshot_name(name)?;
            pool.volume_info(&full)
                .with_context(|| format!("snapshot {full}"))?;
            pool.delete_volume(&full)
                .with_context(|| format!("deleting snapshot {full}"))?;
            if json {
                output::json(&serde_json::json!({ "deleted": full }))
            } else {
                println!(
                    "deleted snapshot {full} (run `tessera gc` to reclaim unreferenced chunks)"
                );
                Ok(())
            }
        }
    }
}

/// Checks `VOL@SNAP`.
fn snapshot_name(name: &str) -> Result<String, CliError> {
    match name.split_once('@') {
        Some((v, s)) if !v.is_empty() && !s.is_empty() => Ok(name.to_string()),
        _ => Err(CliError::invalid(format!(
            "snapshot {name:?} must be written VOLUME@SNAPSHOT"
        ))),
    }
}

fn clone(json: bool, dir: &Path, source: &str, name: &str) -> Result<()> {
    validate_volume_name(name)?;
    let mut pool = backend(dir)?;
    let info = pool
        .clone_volume(source, name)
        .with_context(|| format!("cloning {source} to {name}"))?;
    if json {
        output::json(&VolumeJson::from(&info))
    } else {
        println!("cloned {source} to volume {}", info.name);
        Ok(())
    }
}

/// A progress bar on stderr when it is a terminal (and output is not JSON).
fn progress_bar(json: bool, what: &str) -> Option<indicatif::ProgressBar> {
    use std::io::IsTerminal;
    if json || !std::io::stderr().is_terminal() {
        return None;
    }
    let bar = indicatif::ProgressBar::new(0);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{prefix} [{bar:40}] {pos}/{len} {elapsed}")
            .expect("valid template")
            .progress_chars("=> "),
    );
    bar.set_prefix(what.to_string());
    Some(bar)
}

fn update(bar: &Option<indicatif::ProgressBar>, done: u64, total: u64) {
    if let Some(b) = bar {
        b.set_length(total);
        b.set_position(done);
    }
}

fn gc(json: bool, dir: &Path) -> Result<()> {
    let mut pool = backend(dir)?;
    let bar = progress_bar(json, "gc");
    let report = pool
        .gc(&mut |done, total| update(&bar, done, total))
        .context("garbage collection")?;
    if let Some(b) = &bar {
        b.finish_and_clear();
    }
    if json {
        output::json(&report)
    } else {
        println!(
            "gc: deleted {} unreferenced chunks and {} segment files, moved {} of live data, freed {}",
            report.chunks_deleted,
            report.segments_deleted,
            format_size(report.bytes_moved),
            format_size(report.bytes_freed)
        );
        Ok(())
    }
}

fn fsck(json: bool, dir: &Path, repair: bool, verify_data: bool) -> Result<()> {
    let mut pool = backend(dir)?;
    let bar = progress_bar(json, "fsck");
    let report = pool
        .fsck(repair, verify_data, &mut |done, total| {
            update(&bar, done, total)
        })
        .context("fsck")?;
    if let Some(b) = &bar {
        b.finish_and_clear();
    }
    let found = report.problems.len();
    // Problems found by a repairing run that reports success are fixed; any other
    // problem is still there.
    let remaining = if report.is_clean() || (repair && report.repaired) {
        0
    } else {
        found
    };
    if json {
        let mut value = serde_json::to_value(&report).context("encoding the fsck report")?;
        value["clean"] = (remaining == 0).into();
        value["remaining"] = remaining.into();
        output::json(&value)?;
    } else {
        for p in &report.problems {
            println!("problem: {p}");
        }
        if found == 0 {
            println!("fsck: pool {} is clean", dir.display());
        } else if remaining == 0 {
            println!("fsck: found {found} problems and repaired them");
        } else {
            println!("fsck: found {found} problems");
        }
    }
    if remaining > 0 {
        if repair {
            bail!("fsck: {remaining} problems remain after repair");
        }
        bail!("fsck: {remaining} problems found; run `tessera fsck --repair` to fix them");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::CompressionArg;
    use crate::errors::Exit;

    #[test]
    fn names() {
        for ok in ["a", "vol-1", "pvc-0b3f.x_y", "9", "_a", &"x".repeat(128)] {
            validate_volume_name(ok).unwrap();
        }
        for bad in [
            "",
            "Bad Name",
            "bad name",
            "Upper",
            "-x",
            ".hidden",
            "a/b",
            "é",
            &"x".repeat(129),
        ] {
            let e = validate_volume_name(bad).unwrap_err();
            assert_eq!(e.exit, Exit::Invalid, "{bad:?}");
        }
    }

    #[test]
    fn names_agree_with_store() {
        let long = "x".repeat(129);
        for n in [
            "a",
            "vol-1",
            "_a",
            "9.9",
            "",
            "Bad Name",
            "Upper",
            "-x",
            ".x",
            "a/b",
            "é",
            long.as_str(),
        ] {
            assert_eq!(
                validate_volume_name(n).is_ok(),
                tessera_store::validate_volume_name(n).is_ok(),
                "{n:?}"
            );
        }
    }

    fn opts(size: &str, chunk: &str) -> CreateOpts {
        CreateOpts {
            size: size.into(),
            chunk_size: chunk.into(),
            compression: CompressionArg::Zstd,
        }
    }

    #[test]
    fn options() {
        let o = volume_options(&opts("10GiB", "1MiB")).unwrap();
        assert_eq!(o.capacity, 10 << 30);
        assert_eq!(o.chunk_size, 1 << 20);
        assert_eq!(o.compression, tessera_store::Compression::Zstd);
        volume_options(&opts("1G", "64K")).unwrap();
        volume_options(&opts("1G", "4MiB")).unwrap();
        for (size, chunk) in [
            ("12XB", "1MiB"),
            ("0", "1MiB"),
            ("1G", "3MiB"),
            ("1G", "32KiB"),
            ("1G", "8MiB"),
            ("1G", "1MB"),
        ] {
            let e = volume_options(&opts(size, chunk)).unwrap_err();
            assert_eq!(e.exit, Exit::Invalid, "{size} {chunk}");
        }
    }

    #[test]
    fn explicit_data_dir_wins() {
        assert_eq!(
            data_dir(Some(Path::new("/x/y"))).unwrap(),
            PathBuf::from("/x/y")
        );
        // An empty value (e.g. TESSERA_DATA_DIR="") falls back to the default.
        assert!(!data_dir(Some(Path::new("")))
            .unwrap()
            .as_os_str()
            .is_empty());
    }
}
