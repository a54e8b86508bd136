//! Daemon configuration: `configs/default.toml` embedded at build time,
//! replaced as a whole by `--config FILE`, validated before use.
//!
//! The TOML format is TOML v1.0; unknown keys are refused so a misspelt
//! setting is an error rather than a silent default.
//!
//! The file named by `--config` must be a regular file of at most
//! [`MAX_CONFIG_BYTES`]: a FIFO, a device (`/dev/zero`) or a directory is
//! refused by name before anything is read, so a wrong path cannot hang a
//! daemon or make it buffer without bound.

use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The embedded default configuration.
pub const DEFAULT_CONFIG: &str = include_str!("../../configs/default.toml");

/// Largest configuration file accepted (a topology seed of thousands of
/// ports is far below this).
pub const MAX_CONFIG_BYTES: u64 = 1 << 20;

/// Errors of loading a configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("config \"{path}\": cannot read")]
    Read {
        /// File.
        path: PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// The path names something other than a regular file.
    #[error("config \"{path}\": not a regular file ({kind})")]
    NotRegular {
        /// Path.
        path: PathBuf,
        /// What it is.
        kind: &'static str,
    },
    /// The file is larger than [`MAX_CONFIG_BYTES`].
    #[error("config \"{path}\": {size} bytes, more than the limit of {MAX_CONFIG_BYTES}")]
    TooLarge {
        /// Path.
        path: PathBuf,
        /// Its size.
        size: u64,
    },
    /// Not valid TOML or wrong shape.
    #[error("config \"{origin}\": {source}")]
    Parse {
        /// File name or `<embedded default>`.
        origin: String,
        /// Cause.
        #[source]
        source: Box<toml::de::Error>,
    },
    /// A value out of range.
    #[error("config \"{origin}\": {key}: {reason}")]
    Invalid {
        /// File name or `<embedded default>`.
        origin: String,
        /// Dotted key.
        key: String,
        /// Why.
        reason: String,
    },
}

/// `[pmd]`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PmdConfig {
    /// Cores, one PMD thread each.
    pub cores: Vec<usize>,
    /// `poll` or `adaptive`.
    pub idle: String,
}

/// `[fdb]`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FdbConfig {
    /// Entries per bridge.
    pub max_entries: usize,
    /// Aging, seconds.
    pub aging_secs: u32,
}

/// `[control]`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ControlConfig {
    /// Period of the liveness/sync check, milliseconds.
    pub reconcile_interval_ms: u64,
}

/// `[[bridge]]`: a topology seed.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BridgeSeed {
    /// Bridge name.
    pub name: String,
    /// Ports: `name`, `type` and the other `add-port` options.
    #[serde(default)]
    pub port: Vec<BTreeMap<String, String>>,
}

/// A whole configuration.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// PMD settings.
    pub pmd: PmdConfig,
    /// MAC table.
    pub fdb: FdbConfig,
    /// Control process.
    pub control: ControlConfig,
    /// Topology seed for an empty state.
    #[serde(default)]
    pub bridge: Vec<BridgeSeed>,
}

/// Reads `path` after checking it is a regular file of a bounded size.
/// The check is made on the opened file (fstat), so a path swapped between
/// a check and the open cannot slip a FIFO or a device through.
pub fn read_config_file(path: &Path) -> Result<String, ConfigError> {
    use std::io::Read;
    use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
    let read_err = |source| ConfigError::Read {
        path: path.to_owned(),
        source,
    };
    // O_NONBLOCK: opening a FIFO for reading must not wait for a writer.
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(read_err)?;
    let meta = f.metadata().map_err(read_err)?;
    let ft = meta.file_type();
    if !ft.is_file() {
        let kind = if ft.is_dir() {
            "a directory"
        } else if ft.is_fifo() {
            "a FIFO"
        } else if ft.is_char_device() || ft.is_block_device() {
            "a device"
        } else if ft.is_socket() {
            "a socket"
        } else {
            "not a file"
        };
        return Err(ConfigError::NotRegular {
            path: path.to_owned(),
            kind,
        });
    }
    if meta.len() > MAX_CONFIG_BYTES {
        return Err(ConfigError::TooLarge {
            path: path.to_owned(),
            size: meta.len(),
        });
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    // The file may grow after the fstat: never read past the limit.
    f.take(MAX_CONFIG_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(read_err)?;
    if bytes.len() as u64 > MAX_CONFIG_BYTES {
        return Err(ConfigError::TooLarge {
            path: path.to_owned(),
            size: bytes.len() as u64,
        });
    }
    String::from_utf8(bytes).map_err(|e| {
        read_err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!(
                "not UTF-8 text (invalid byte at offset {})",
                e.utf8_error().valid_up_to()
            ),
        ))
    })
}

impl Config {
    /// The embedded default.
    pub fn embedded() -> Result<Config, ConfigError> {
        Self::parse(DEFAULT_CONFIG, "<embedded default>")
    }

    /// `FILE` when given, else the embedded default.
    pub fn load(file: Option<&Path>) -> Result<Config, ConfigError> {
        match file {
            None => Self::embedded(),
            Some(p) => {
                let text = read_config_file(p)?;
                Self::parse(&text, &p.display().to_string())
            }
        }
    }

    /// Parses and validates `text`; `origin` names it in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Config, ConfigError> {
        let cfg: Config = toml::from_str(text).map_err(|e| ConfigError::Parse {
            origin: origin.to_owned(),
            source: Box::new(e),
        })?;
        cfg.validate(origin)?;
        Ok(cfg)
    }

    fn validate(&self, origin: &str) -> Result<(), ConfigError> {
        let bad = |key: &str, reason: String| ConfigError::Invalid {
            origin: origin.to_owned(),
            key: key.to_owned(),
            reason,
        };
        if self.pmd.cores.is_empty() {
            return Err(bad("pmd.cores", "at least one core is needed".into()));
        }
        let ncpu = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1);
        let mut seen = std::collections::BTreeSet::new();
        for &c in &self.pmd.cores {
            if c >= ncpu {
                return Err(bad(
                    "pmd.cores",
                    format!("core {c} does not exist (this machine has {ncpu})"),
                ));
            }
            if !seen.insert(c) {
                return Err(bad("pmd.cores", format!("core {c} is listed twice")));
            }
        }
        if !matches!(self.pmd.idle.as_str(), "poll" | "adaptive") {
            return Err(bad(
                "pmd.idle",
                format!("\"{}\" is not \"poll\" or \"adaptive\"", self.pmd.idle),
            ));
        }
        if self.fdb.max_entries == 0 || self.fdb.max_entries > 1 << 20 {
            return Err(bad(
                "fdb.max_entries",
                format!("{} is outside 1..=1048576", self.fdb.max_entries),
            ));
        }
        if self.fdb.aging_secs == 0 {
            return Err(bad("fdb.aging_secs", "must be at least 1".into()));
        }
        if !(50..=60_000).contains(&self.control.reconcile_interval_ms) {
            return Err(bad(
                "control.reconcile_interval_ms",
                format!(
                    "{} is outside 50..=60000",
                    self.control.reconcile_interval_ms
                ),
            ));
        }
        for b in &self.bridge {
            crate::portspec::check_name("bridge", &b.name)
                .map_err(|e| bad("bridge.name", e.to_string()))?;
            for p in &b.port {
                let name = p.get("name").ok_or_else(|| {
                    bad(
                        "bridge.port",
                        format!("a port of \"{}\" has no name", b.name),
                    )
                })?;
                let mut opts = p.clone();
                opts.remove("name");
                crate::portspec::validate(name, &opts)
                    .map_err(|e| bad("bridge.port", e.to_string()))?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_default_is_valid() {
        let c = Config::embedded().unwrap();
        assert_eq!(c.pmd.idle, "adaptive");
        assert_eq!(c.fdb.aging_secs, 300);
        assert!(c.bridge.is_empty());
    }

    #[test]
    fn unknown_key_is_an_error_naming_origin() {
        let text = DEFAULT_CONFIG.replace("idle = \"adaptive\"", "idel = \"adaptive\"");
        let e = Config::parse(&text, "my.toml").unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("my.toml") && msg.contains("idel"), "{msg}");
    }

    #[test]
    fn out_of_range_values_are_named() {
        let text = DEFAULT_CONFIG.replace("idle = \"adaptive\"", "idle = \"sleepy\"");
        let e = Config::parse(&text, "x").unwrap_err().to_string();
        assert!(e.contains("pmd.idle") && e.contains("sleepy"), "{e}");
        let text = DEFAULT_CONFIG.replace("cores = [0]", "cores = [100000]");
        let e = Config::parse(&text, "x").unwrap_err().to_string();
        assert!(e.contains("core 100000 does not exist"), "{e}");
        let text = DEFAULT_CONFIG.replace("aging_secs = 300", "aging_secs = 0");
        assert!(Config::parse(&text, "x").is_err());
    }

    #[test]
    fn topology_seed_is_parsed_and_validated() {
        let mut text = DEFAULT_CONFIG.to_owned();
        text.push_str(
            "[[bridge]]\nname = \"br0\"\n[[bridge.port]]\nname = \"c1\"\ntype = \"tap\"\nip = \"10.0.0.1/24\"\n",
        );
        let c = Config::parse(&text, "x").unwrap();
        assert_eq!(c.bridge[0].port[0]["type"], "tap");
        let bad = text.replace("10.0.0.1/24", "10.0.0.1/99");
        let e = Config::parse(&bad, "x").unwrap_err().to_string();
        assert!(e.contains("10.0.0.1/99"), "{e}");
    }

    #[test]
    fn missing_file_is_reported_by_path() {
        let e = Config::load(Some(Path::new("/nonexistent/vsw.toml"))).unwrap_err();
        assert!(e.to_string().contains("/nonexistent/vsw.toml"));
    }

    struct Tmp(PathBuf);
    impl Tmp {
        fn new(tag: &str) -> Tmp {
            let p = std::env::temp_dir().join(format!("vsw-cfg-{tag}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&p);
            std::fs::create_dir_all(&p).unwrap();
            Tmp(p)
        }
    }
    impl Drop for Tmp {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn non_regular_paths_are_refused_by_kind_without_reading() {
        let d = Tmp::new("kinds");
        let e = Config::load(Some(&d.0)).unwrap_err().to_string();
        assert!(e.contains("not a regular file (a directory)"), "{e}");
        // /dev/zero would be read for ever without the check.
        let e = Config::load(Some(Path::new("/dev/zero")))
            .unwrap_err()
            .to_string();
        assert!(e.contains("/dev/zero") && e.contains("a device"), "{e}");
        let fifo = d.0.join("fifo");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        // Without O_NONBLOCK this open would wait for a writer for ever.
        let e = Config::load(Some(&fifo)).unwrap_err().to_string();
        assert!(e.contains("a FIFO"), "{e}");
    }

    #[test]
    fn oversized_and_non_utf8_files_are_refused() {
        let d = Tmp::new("size");
        let big = d.0.join("big.toml");
        let mut text = DEFAULT_CONFIG.to_owned();
        text.push_str(&"#".repeat(MAX_CONFIG_BYTES as usize));
        std::fs::write(&big, text).unwrap();
        let e = Config::load(Some(&big)).unwrap_err().to_string();
        assert!(e.contains("more than the limit"), "{e}");
        let bin = d.0.join("bin.toml");
        std::fs::write(&bin, b"[pmd]\ncores = [0]\nidle = \"\xff\"\n").unwrap();
        let e = Config::load(Some(&bin)).unwrap_err();
        assert!(
            crate::controld::error_chain(&e).contains("not UTF-8"),
            "{e}"
        );
        // A good file still loads.
        let ok = d.0.join("ok.toml");
        std::fs::write(&ok, DEFAULT_CONFIG).unwrap();
        assert_eq!(
            Config::load(Some(&ok)).unwrap(),
            Config::embedded().unwrap()
        );
    }
}
