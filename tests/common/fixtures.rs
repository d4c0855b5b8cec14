//! Fixture flakes and input folders that build offline with Debian's Nix.
//!
//! Flakes have no inputs; every package is `derivation { builder = "/bin/sh"; ... }` copying
//! a file of the flake, so it builds here for every system listed in
//! [`super::nix::NIX_CONFIG`]'s `extra-platforms`. Write each flake into its own empty
//! folder: Nix copies the whole folder into the store.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The four systems the tests publish.
pub const SYSTEMS: [&str; 4] = [
    "x86_64-linux",
    "i686-linux",
    "aarch64-linux",
    "armv6l-linux",
];

/// Published files per system: system → file name → bytes.
pub type Expected = BTreeMap<String, BTreeMap<String, Vec<u8>>>;

/// OCI platform of a Nix system: `(os, architecture, variant)`.
pub fn platform(system: &str) -> (&'static str, &'static str, Option<&'static str>) {
    match system {
        "x86_64-linux" => ("linux", "amd64", None),
        "i686-linux" => ("linux", "386", None),
        "aarch64-linux" => ("linux", "arm64", None),
        "armv6l-linux" => ("linux", "arm", Some("v6")),
        "armv7l-linux" => ("linux", "arm", Some("v7")),
        "riscv64-linux" => ("linux", "riscv64", None),
        "powerpc64le-linux" => ("linux", "ppc64le", None),
        "s390x-linux" => ("linux", "s390x", None),
        "x86_64-darwin" => ("darwin", "amd64", None),
        "aarch64-darwin" => ("darwin", "arm64", None),
        other => panic!("no platform known for Nix system {other}"),
    }
}

/// `linux/arm/v6` style platform string of a Nix system.
pub fn platform_string(system: &str) -> String {
    match platform(system) {
        (os, arch, Some(variant)) => format!("{os}/{arch}/{variant}"),
        (os, arch, None) => format!("{os}/{arch}"),
    }
}

/// Deterministic fake binary: distinct bytes per (name, system, salt), including all 256 byte values.
pub fn fake_binary(name: &str, system: &str, salt: &str) -> Vec<u8> {
    let mut bytes = format!("\x7fELF alba test binary {name} for {system} {salt}\n").into_bytes();
    bytes.extend(0..=255u8);
    bytes.extend(super::sha256_hex(&bytes).into_bytes());
    bytes
}

/// Describes a fixture flake; [`FlakeFixture::write`] puts it in a folder.
#[derive(Clone, Debug)]
pub struct FlakeFixture {
    name: String,
    systems: Vec<String>,
    static_section: Option<Option<Vec<String>>>,
    container_section: Option<Option<Vec<String>>>,
    folder: bool,
    salt: String,
}

/// What a written fixture flake builds.
#[derive(Clone, Debug)]
pub struct WrittenFlake {
    /// The flake folder (pass it as `--flake`).
    pub dir: PathBuf,
    /// Static files per system, as alba must publish them.
    pub expected: Expected,
    /// Docker-archive tarball per system (only with [`FlakeFixture::container`]).
    pub images: BTreeMap<String, PathBuf>,
}

impl FlakeFixture {
    /// A flake releasing `name` for `systems`, with a `static = { };` section.
    pub fn new(name: &str, systems: &[&str]) -> FlakeFixture {
        FlakeFixture {
            name: name.to_string(),
            systems: systems.iter().map(|s| s.to_string()).collect(),
            static_section: Some(None),
            container_section: None,
            folder: false,
            salt: String::new(),
        }
    }

    /// Sets `static.targets`.
    pub fn static_targets(mut self, targets: &[&str]) -> Self {
        self.static_section = Some(Some(targets.iter().map(|t| t.to_string()).collect()));
        self
    }

    /// Leaves out the `static` section.
    pub fn no_static(mut self) -> Self {
        self.static_section = None;
        self
    }

    /// Makes each package a folder with `bin/<name>` and `bin/<name>-helper`.
    pub fn folder(mut self) -> Self {
        self.folder = true;
        self
    }

    /// Adds a `container` section (with `targets` unless empty) and
    /// `packages.<system>.docker.<name>` = an uncompressed docker-archive per system.
    pub fn container(mut self, targets: &[&str]) -> Self {
        let targets =
            (!targets.is_empty()).then(|| targets.iter().map(|t| t.to_string()).collect());
        self.container_section = Some(targets);
        self
    }

    /// Mixes `salt` into every file, so two fixtures never share store paths.
    pub fn salt(mut self, salt: &str) -> Self {
        self.salt = salt.to_string();
        self
    }

    /// Writes flake.nix and its input files into `dir` (created if needed).
    pub fn write(&self, dir: &Path) -> WrittenFlake {
        std::fs::create_dir_all(dir).expect("could not create the fixture flake folder");
        let mut expected = Expected::new();
        let mut images = BTreeMap::new();
        let mut packages = String::new();
        for system in &self.systems {
            let files = self.write_files(dir, system);
            packages.push_str(&self.package_nix(system));
            if self.container_section.is_some() {
                let image = dir.join(format!("image-{system}.tar"));
                docker_archive(&image, system, &self.name, &files);
                images.insert(system.clone(), image);
            }
            expected.insert(system.clone(), files);
        }
        let flake = format!(
            "{{\n  description = \"alba test fixture\";\n  outputs = {{ self }}: {{\n    release = {};\n    packages = {{\n{packages}    }};\n  }};\n}}\n",
            self.release_nix()
        );
        std::fs::write(dir.join("flake.nix"), flake).expect("could not write flake.nix");
        WrittenFlake {
            dir: dir.to_path_buf(),
            expected,
            images,
        }
    }

    /// Writes `bin-<system>` (and `helper-<system>`) and returns the files alba publishes.
    fn write_files(&self, dir: &Path, system: &str) -> BTreeMap<String, Vec<u8>> {
        let mut files = BTreeMap::new();
        let main = fake_binary(&self.name, system, &self.salt);
        write_executable(&dir.join(format!("bin-{system}")), &main);
        files.insert(self.name.clone(), main);
        if self.folder {
            let helper_name = format!("{}-helper", self.name);
            let helper = fake_binary(&helper_name, system, &self.salt);
            write_executable(&dir.join(format!("helper-{system}")), &helper);
            files.insert(helper_name, helper);
        }
        files
    }

    /// The `release = { ... }` attribute set.
    fn release_nix(&self) -> String {
        let systems: Vec<String> = self.systems.iter().map(|s| nix_str(s)).collect();
        let mut text = format!(
            "{{ name = {}; systems = [ {} ];",
            nix_str(&self.name),
            systems.join(" ")
        );
        for (key, section) in [
            ("static", &self.static_section),
            ("container", &self.container_section),
        ] {
            match section {
                None => {}
                Some(None) => text.push_str(&format!(" {key} = {{ }};")),
                Some(Some(targets)) => {
                    let list: Vec<String> = targets.iter().map(|t| nix_str(t)).collect();
                    text.push_str(&format!(
                        " {key} = {{ targets = [ {} ]; }};",
                        list.join(" ")
                    ));
                }
            }
        }
        text.push_str(" }");
        text
    }

    /// `"<system>" = { <name> = derivation ...; docker.<name> = derivation ...; };`
    fn package_nix(&self, system: &str) -> String {
        let name = &self.name;
        let script = if self.folder {
            format!(
                "/bin/mkdir -p $out/bin && /bin/cp ${{./bin-{system}}} $out/bin/{name} && /bin/cp ${{./helper-{system}}} $out/bin/{name}-helper"
            )
        } else {
            format!("/bin/cp ${{./bin-{system}}} $out")
        };
        let mut text = format!(
            "      {} = {{\n        {} = {};\n",
            nix_str(system),
            nix_str(name),
            derivation(system, name, &script)
        );
        if self.container_section.is_some() {
            let image = format!("/bin/cp ${{./image-{system}.tar}} $out");
            let drv = derivation(system, &format!("{name}-image.tar"), &image);
            text.push_str(&format!("        docker.{} = {drv};\n", nix_str(name)));
        }
        text.push_str("      };\n");
        text
    }
}

/// `derivation { system; name; builder = "/bin/sh"; args = [ "-c" script ]; }`.
fn derivation(system: &str, name: &str, script: &str) -> String {
    format!(
        "derivation {{ system = {}; name = {}; builder = \"/bin/sh\"; args = [ \"-c\" \"{script}\" ]; }}",
        nix_str(system),
        nix_str(name)
    )
}

/// A Nix string literal for `s` (escapes `"`, `\` and `${`).
pub fn nix_str(s: &str) -> String {
    let escaped = s
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace("${", "\\${");
    format!("\"{escaped}\"")
}

/// Writes `bytes` to `path` with mode 0755.
fn write_executable(path: &Path, bytes: &[u8]) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, bytes)
        .unwrap_or_else(|e| panic!("could not write {}: {e}", path.display()));
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))
        .expect("could not chmod a fixture file");
}

/// A static flake (each package a single file) with `static = { };`; returns what it builds.
pub fn static_flake(dir: &Path, name: &str, systems: &[&str]) -> Expected {
    FlakeFixture::new(name, systems).write(dir).expected
}

/// A static flake with `static.targets`; returns what it builds.
pub fn static_flake_with_targets(
    dir: &Path,
    name: &str,
    systems: &[&str],
    targets: &[&str],
) -> Expected {
    FlakeFixture::new(name, systems)
        .static_targets(targets)
        .write(dir)
        .expected
}

/// A static flake whose packages are folders with `bin/<name>` and `bin/<name>-helper`.
pub fn static_folder_flake(dir: &Path, name: &str, systems: &[&str]) -> Expected {
    FlakeFixture::new(name, systems)
        .folder()
        .write(dir)
        .expected
}

/// The seed `DIR` form of `alba static push`: `dir/<os>/<arch>/<name>` per system.
///
/// Variants are not part of df-dist paths, so armv6l-linux and armv7l-linux would clash.
pub fn static_dir(dir: &Path, name: &str, systems: &[&str]) -> Expected {
    let mut expected = Expected::new();
    for system in systems {
        let (os, arch, _) = platform(system);
        let folder = dir.join(os).join(arch);
        std::fs::create_dir_all(&folder).expect("could not create a static DIR folder");
        let bytes = fake_binary(name, system, "dir");
        write_executable(&folder.join(name), &bytes);
        expected.insert(
            system.to_string(),
            BTreeMap::from([(name.to_string(), bytes)]),
        );
    }
    expected
}

/// The seed `DIR` form of `alba container push`: `dir/<os>.<arch>[.<variant>].tar` per system
/// (uncompressed docker-archives); returns system → tarball.
pub fn docker_dir(dir: &Path, name: &str, systems: &[&str]) -> BTreeMap<String, PathBuf> {
    std::fs::create_dir_all(dir).expect("could not create the container DIR");
    let mut images = BTreeMap::new();
    for system in systems {
        let (os, arch, variant) = platform(system);
        let file = match variant {
            Some(v) => format!("{os}.{arch}.{v}.tar"),
            None => format!("{os}.{arch}.tar"),
        };
        let files = BTreeMap::from([(name.to_string(), fake_binary(name, system, "docker"))]);
        docker_archive(&dir.join(&file), system, name, &files);
        images.insert(system.to_string(), dir.join(file));
    }
    images
}

/// Writes an uncompressed docker-archive like nixpkgs' `dockerTools.buildImage`: one layer
/// holding `bin/<file>` for each of `files`, a config whose architecture is the system's
/// (no `variant`, as nixpkgs writes it), and `manifest.json` tagging it `<name>:latest`.
pub fn docker_archive(path: &Path, system: &str, name: &str, files: &BTreeMap<String, Vec<u8>>) {
    let layer = layer_tar(files);
    let diff_id = super::sha256_hex(&layer);
    let (os, arch, _) = platform(system);
    let config = serde_json::json!({
        "architecture": arch,
        "os": os,
        "config": { "Entrypoint": [format!("/bin/{name}")] },
        "created": "1970-01-01T00:00:01Z",
        "rootfs": { "type": "layers", "diff_ids": [format!("sha256:{diff_id}")] },
        "history": [{ "created": "1970-01-01T00:00:01Z", "created_by": "alba tests" }],
    });
    let config = serde_json::to_vec(&config).expect("config serializes");
    let config_name = format!("{}.json", super::sha256_hex(&config));
    let manifest = serde_json::json!([{
        "Config": config_name,
        "RepoTags": [format!("{name}:latest")],
        "Layers": [format!("{diff_id}/layer.tar")],
    }]);
    let manifest = serde_json::to_vec(&manifest).expect("manifest serializes");
    let entries: [(String, &[u8]); 3] = [
        (config_name.clone(), &config),
        (format!("{diff_id}/layer.tar"), &layer),
        ("manifest.json".to_string(), &manifest),
    ];
    let file = std::fs::File::create(path)
        .unwrap_or_else(|e| panic!("could not create {}: {e}", path.display()));
    let mut archive = tar::Builder::new(file);
    for (entry, bytes) in entries {
        append(&mut archive, &entry, bytes, 0o644);
    }
    archive
        .finish()
        .expect("could not finish the docker-archive");
}

/// A layer tarball with `bin/` and one executable per file.
fn layer_tar(files: &BTreeMap<String, Vec<u8>>) -> Vec<u8> {
    let mut archive = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_gnu();
    header.set_entry_type(tar::EntryType::Directory);
    header.set_mode(0o755);
    header.set_mtime(1);
    header.set_size(0);
    header.set_cksum();
    archive
        .append_data(&mut header, "bin/", std::io::empty())
        .expect("could not add bin/ to a layer");
    for (name, bytes) in files {
        append(&mut archive, &format!("bin/{name}"), bytes, 0o755);
    }
    archive
        .into_inner()
        .expect("could not finish a layer tarball")
}

/// Appends a regular file with fixed owner and mtime.
fn append<W: std::io::Write>(archive: &mut tar::Builder<W>, path: &str, bytes: &[u8], mode: u32) {
    let mut header = tar::Header::new_gnu();
    header.set_entry_type(tar::EntryType::Regular);
    header.set_mode(mode);
    header.set_mtime(1);
    header.set_uid(0);
    header.set_gid(0);
    header.set_size(bytes.len() as u64);
    header.set_cksum();
    archive
        .append_data(&mut header, path, bytes)
        .unwrap_or_else(|e| panic!("could not add {path} to a tarball: {e}"));
}

/// A folder of docker archives (uncompressed): per platform, the `base` layer and one own
/// layer (`bin/albatros`, different per label and platform).
pub fn image_dir(root: &Path, label: &str, base: &[u8], platforms: &[&str]) -> PathBuf {
    let dir = root.join(format!("images-{label}"));
    std::fs::create_dir_all(&dir).expect("image dir");
    for arch in platforms {
        let own = super::images::layer_tar(&[(
            "bin/albatros",
            format!("albatros {label} for {arch}").as_bytes(),
        )]);
        super::images::docker_archive(
            &dir.join(format!("linux.{arch}.tar")),
            arch,
            "linux",
            &[base.to_vec(), own],
            false,
        );
    }
    dir
}

/// A base layer holding `etc/os-release` = `text`.
pub fn base_layer(text: &str) -> Vec<u8> {
    super::images::layer_tar(&[("etc/os-release", text.as_bytes())])
}
