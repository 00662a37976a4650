//! Linux build of the `mlx-sys` 0.7.0 C API surface.
//!
//! 1. Locate a prebuilt MLX (the `mlx-cpu` / `mlx-cuda-*` pip wheel layout:
//!    `<MLX_DIR>/mlx/include`, `<MLX_DIR>/mlx/lib/libmlx.so`).
//! 2. Locate the mlx-c sources that upstream ships inside the `mlx-sys` 0.7.0
//!    crate: cargo itself downloads that crate (checksum-verified) into its
//!    registry cache via `cargo metadata` on a throw-away manifest.
//!    Override with MLX_C_SRC_DIR.
//! 3. Compile mlx-c (26 C++ files) into a static lib with `cc`.
//! 4. Run bindgen over the mlx-c headers, same settings as upstream.
//! 5. Link libmlx.so dynamically and publish its directory (DEP_MLX_LIBDIR).

use std::{
    env,
    ffi::OsStr,
    fs,
    path::{Path, PathBuf},
    process::Command,
};

/// mlx-rs 0.33.0 pins mlx-sys =0.7.0, which bundles mlx-c 0.7.0 (for MLX v0.32.2).
const UPSTREAM_MLX_SYS: &str = "0.7.0";

fn out_dir() -> PathBuf {
    PathBuf::from(env::var_os("OUT_DIR").unwrap())
}

fn find_mlx_dir() -> PathBuf {
    println!("cargo:rerun-if-env-changed=MLX_DIR");
    let has_mlx = |p: &Path| p.join("mlx/include/mlx/mlx.h").is_file();
    if let Some(dir) = env::var_os("MLX_DIR") {
        let dir = PathBuf::from(dir);
        assert!(
            has_mlx(&dir),
            "MLX_DIR={} does not contain mlx/include/mlx/mlx.h (expected a pip wheel layout)",
            dir.display()
        );
        return dir;
    }
    // The package's own MLX runtime folder (installed by scripts/setup.sh), then
    // the active Python environment's site-packages (pip install mlx-cpu).
    let bundled = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").unwrap()).join("../../mlx-runtime");
    println!("cargo:rerun-if-changed={}", bundled.join("mlx/include/mlx/version.h").display());
    if has_mlx(&bundled) {
        return bundled.canonicalize().unwrap_or(bundled);
    }
    for py in ["python3", "python"] {
        let out = Command::new(py)
            .args(["-c", "import sysconfig;print(sysconfig.get_paths()['purelib'])"])
            .output();
        if let Ok(out) = out {
            let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
            if out.status.success() && has_mlx(&dir) {
                return dir;
            }
        }
    }
    panic!("MLX not found: set MLX_DIR to a directory holding an unpacked mlx-cpu/mlx-cuda wheel");
}

/// Ask cargo where the upstream `mlx-sys` crate's sources are (downloading it if needed).
fn find_mlx_c_src() -> PathBuf {
    println!("cargo:rerun-if-env-changed=MLX_C_SRC_DIR");
    if let Some(dir) = env::var_os("MLX_C_SRC_DIR") {
        return PathBuf::from(dir);
    }
    let probe = out_dir().join("mlx-c-locator");
    fs::create_dir_all(&probe).unwrap();
    fs::write(
        probe.join("Cargo.toml"),
        format!(
            "[package]\nname = \"mlx-c-locator\"\nversion = \"0.0.0\"\nedition = \"2021\"\n\
             [lib]\npath = \"lib.rs\"\n\
             [dependencies]\nmlx-sys = {{ version = \"={UPSTREAM_MLX_SYS}\", default-features = false }}\n\
             [workspace]\n"
        ),
    )
    .unwrap();
    fs::write(probe.join("lib.rs"), "").unwrap();

    let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let metadata = |offline: bool| {
        let mut cmd = Command::new(&cargo);
        cmd.args(["metadata", "--format-version", "1", "--manifest-path"])
            .arg(probe.join("Cargo.toml"));
        if offline {
            cmd.arg("--offline");
        }
        cmd.output().expect("failed to run `cargo metadata`")
    };
    // Offline first (no network if the crate is already in cargo's cache),
    // then let cargo download it from the registry.
    let mut out = metadata(true);
    if !out.status.success() && env::var_os("CARGO_NET_OFFLINE").is_none_or(|v| v != "true") {
        out = metadata(false);
    }
    assert!(
        out.status.success(),
        "`cargo metadata` for mlx-sys {UPSTREAM_MLX_SYS} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let pkg = meta["packages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| {
            p["name"] == "mlx-sys"
                && p["version"] == UPSTREAM_MLX_SYS
                && p["source"].as_str().is_some_and(|s| s.starts_with("registry+"))
        })
        .expect("mlx-sys not found in cargo metadata");
    let manifest = PathBuf::from(pkg["manifest_path"].as_str().unwrap());
    manifest.parent().unwrap().join("src/mlx-c")
}

fn list(dir: &Path, ext: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension() == Some(OsStr::new(ext)))
        .collect();
    v.sort();
    v
}

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=format_compat.h");
    println!("cargo:rerun-if-changed=half_compat.h");

    let mlx_dir = find_mlx_dir();
    let mlx_include = mlx_dir.join("mlx/include");
    let mlx_lib = mlx_dir.join("mlx/lib");
    let mlx_c = find_mlx_c_src();
    assert!(
        mlx_c.join("mlx/c/mlx.h").is_file(),
        "no mlx-c sources at {}",
        mlx_c.display()
    );

    // --- the wheel must be the exact MLX release this mlx-c targets ----------
    // (0.32.4 already changed a C++ signature that mlx-c 0.7.0 calls.)
    let want = fs::read_to_string(mlx_c.join("CMakeLists.txt"))
        .unwrap()
        .lines()
        .find_map(|l| l.trim().strip_prefix("GIT_TAG v").map(|v| v.trim_end_matches(')').trim().to_owned()))
        .expect("no MLX GIT_TAG in mlx-c CMakeLists.txt");
    let vh = fs::read_to_string(mlx_include.join("mlx/version.h")).unwrap();
    let num = |k: &str| {
        vh.lines()
            .find_map(|l| l.strip_prefix(&format!("#define MLX_VERSION_{k} ")).map(|v| v.trim().to_owned()))
            .unwrap_or_default()
    };
    let have = format!("{}.{}.{}", num("MAJOR"), num("MINOR"), num("PATCH"));
    if have != want && env::var_os("MLX_SKIP_VERSION_CHECK").is_none() {
        panic!("MLX at {} is {have}, but mlx-c from mlx-sys {UPSTREAM_MLX_SYS} targets MLX {want}: install mlx-cpu=={want} (or mlx-cuda-13=={want})", mlx_dir.display());
    }
    println!("cargo:rerun-if-env-changed=MLX_SKIP_VERSION_CHECK");
    println!("cargo:version={have}");

    // --- compile mlx-c (C++20) against the wheel's MLX headers -------------
    let manifest_dir = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").unwrap());
    let mut build = cc::Build::new();
    build
        .cpp(true)
        .std("c++20")
        .include(&mlx_c)
        .include(&mlx_include)
        .files(list(&mlx_c.join("mlx/c"), "cpp"))
        .warnings(false)
        .extra_warnings(false)
        // libstdc++ 12 (Debian 12's GCC) has no <format>; mlx-c uses std::format
        // in one private header. The shim is a no-op on GCC >= 13.
        .flag("-include")
        .flag(manifest_dir.join("format_compat.h").to_str().unwrap())
        // float16_t / bfloat16_t for non-arm64 targets (see half_compat.h).
        .flag("-include")
        .flag(manifest_dir.join("half_compat.h").to_str().unwrap());
    build.compile("mlxc"); // emits rustc-link-lib=static=mlxc and -lstdc++

    // --- link the prebuilt libmlx.so ----------------------------------------
    println!("cargo:rustc-link-search=native={}", mlx_lib.display());
    println!("cargo:rustc-link-lib=dylib=mlx");
    // Dependents with a build script (the final binary / cdylib) read these as
    // DEP_MLX_LIBDIR / DEP_MLX_INCLUDE to set an rpath or bundle the library.
    println!("cargo:libdir={}", mlx_lib.display());
    println!("cargo:include={}", mlx_include.display());

    // --- bindgen: same settings as upstream mlx-sys 0.7.0 -------------------
    let mut builder = bindgen::Builder::default()
        .rust_target("1.73.0".parse().expect("rust-version"))
        .clang_arg(format!("-I{}", mlx_c.display()))
        .clang_arg("-include")
        .clang_arg(manifest_dir.join("half_compat.h").to_str().unwrap())
        .blocklist_function("malloc")
        .blocklist_function("realloc");
    for h in list(&mlx_c.join("mlx/c"), "h") {
        builder = builder.header(h.to_string_lossy());
    }
    builder
        .generate()
        .expect("Unable to generate bindings")
        .write_to_file(out_dir().join("bindings.rs"))
        .expect("Couldn't write bindings!");
}
