//! A runnable PostgreSQL 15 image for tests, made from the host's Debian PostgreSQL 15 (nothing is pulled): its server and client binaries, its library and share directories, every shared library they load and the dynamic loader, on top of the test bed's busybox base image, with a non-root `postgres` user (uid 999); built once, checked with a real initdb and query, and pushed to the test bed's plain registry.
//!
//! Also the example app's backend image (examples/app/backend, on the test bed's local
//! `python:3.11-slim-bookworm` stand-in), built, smoke-tested and pushed like gantry's build
//! phase does it, once per content.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use tokio::sync::OnceCell;

use super::cluster::PLAIN_REGISTRY;

const REPOSITORY: &str = "gantry-test/postgres";
/// The uid (and gid) the server runs as, in the image and in the chart's `runAsUser`.
pub const UID: u32 = 999;
/// Changes whenever what goes into the image changes, so a stale image is never reused.
const RECIPE: &str = "postgres-image-v1";
const BIN: &str = "/usr/lib/postgresql/15/bin";
const LIB: &str = "/usr/lib/postgresql/15/lib";
const SHARE: &str = "/usr/share/postgresql/15";
const PROGRAMS: [&str; 5] = ["postgres", "initdb", "pg_ctl", "pg_isready", "psql"];

static IMAGE: OnceCell<String> = OnceCell::const_new();

const BACKEND_REPOSITORY: &str = "gantry-test/notes-backend";
/// The example backend's build context, relative to the repository root.
const BACKEND_CONTEXT: &str = "examples/app/backend";
static BACKEND: OnceCell<String> = OnceCell::const_new();

fn testbed(name: &str) -> String {
    std::env::var(name)
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| {
            panic!(
                "{name} is not set: start the test bed with `bash .ci/testbed up` and \
                 `source /var/tmp/gantry-testbed/env` before running these tests"
            )
        })
}

/// `127.0.0.1:5000/gantry-test/postgres:15-<key>@sha256:…`: the image, pushed (built the first
/// time only; the tag names the host's PostgreSQL version and this recipe).
pub async fn postgres_image() -> String {
    IMAGE
        .get_or_init(|| async {
            let key = image_key();
            let tag = format!("15-{key}");
            if let Some(digest) = pushed_digest(REPOSITORY, &tag).await {
                return format!("{PLAIN_REGISTRY}/{REPOSITORY}:{tag}@{digest}");
            }
            let reference = format!("{PLAIN_REGISTRY}/{REPOSITORY}:{tag}");
            let built = reference.clone();
            tokio::task::spawn_blocking(move || build_and_push(&built))
                .await
                .unwrap();
            let digest = pushed_digest(REPOSITORY, &tag)
                .await
                .unwrap_or_else(|| panic!("{reference} was pushed but the registry lacks it"));
            format!("{reference}@{digest}")
        })
        .await
        .clone()
}

/// What the image is made of: the host's `postgres --version` and the recipe.
fn image_key() -> String {
    let output = Command::new(format!("{BIN}/postgres"))
        .arg("--version")
        .output()
        .unwrap_or_else(|err| {
            panic!(
                "{BIN}/postgres: {err}: the host's PostgreSQL 15 (Debian postgresql-15) is needed"
            )
        });
    assert!(output.status.success(), "{BIN}/postgres --version failed");
    let mut seed = output.stdout;
    seed.extend_from_slice(RECIPE.as_bytes());
    super::registry::digest_of(&seed)["sha256:".len()..][..12].to_string()
}

/// `127.0.0.1:5000/gantry-test/notes-backend:<key>@sha256:…`: the example app's backend built
/// from examples/app/backend as it is (its Dockerfile, on the test bed's local Python base
/// image), smoke-tested with the command examples/app/gantry.yml gives gantry's build phase
/// (`python3 app.py --self-test`) and pushed; built only when no image of the same content (the
/// context's files and the base image's id) is in the registry yet.
pub async fn backend_image() -> String {
    BACKEND
        .get_or_init(|| async {
            let context = Path::new(env!("CARGO_MANIFEST_DIR")).join(BACKEND_CONTEXT);
            let key = tokio::task::spawn_blocking({
                let context = context.clone();
                move || backend_key(&context)
            })
            .await
            .unwrap();
            if let Some(digest) = pushed_digest(BACKEND_REPOSITORY, &key).await {
                return format!("{PLAIN_REGISTRY}/{BACKEND_REPOSITORY}:{key}@{digest}");
            }
            let reference = format!("{PLAIN_REGISTRY}/{BACKEND_REPOSITORY}:{key}");
            let built = reference.clone();
            tokio::task::spawn_blocking(move || {
                docker(&[
                    "build",
                    "--quiet",
                    "--tag",
                    &built,
                    context.to_str().unwrap(),
                ]);
                let answer = docker(&[
                    "run",
                    "--rm",
                    "--network",
                    "none",
                    &built,
                    "python3",
                    "app.py",
                    "--self-test",
                ]);
                assert_eq!(answer.trim(), "self-test ok", "{built}: {answer}");
                docker(&["push", &built]);
            })
            .await
            .unwrap();
            let digest = pushed_digest(BACKEND_REPOSITORY, &key)
                .await
                .unwrap_or_else(|| panic!("{reference} was pushed but the registry lacks it"));
            format!("{reference}@{digest}")
        })
        .await
        .clone()
}

/// What the backend image is made of: every file of the context and the id of the base image
/// its Dockerfile names (the test bed's local stand-in, which a rebuild of the test bed changes).
fn backend_key(context: &Path) -> String {
    let dockerfile = std::fs::read_to_string(context.join("Dockerfile")).unwrap();
    let base = dockerfile
        .lines()
        .find_map(|line| line.strip_prefix("FROM "))
        .expect("the backend's Dockerfile has a FROM line")
        .trim()
        .to_string();
    let id = docker(&["image", "inspect", "--format", "{{.Id}}", &base]);
    let mut files: Vec<PathBuf> = std::fs::read_dir(context)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.is_file())
        .collect();
    files.sort();
    let mut seed = id.into_bytes();
    for file in files {
        seed.extend_from_slice(file.file_name().unwrap().as_encoded_bytes());
        seed.push(0);
        seed.extend_from_slice(&std::fs::read(&file).unwrap());
        seed.push(0);
    }
    super::registry::digest_of(&seed)["sha256:".len()..][..12].to_string()
}

/// The manifest digest of `repository:tag` in the plain registry, if it is there.
async fn pushed_digest(repository: &str, tag: &str) -> Option<String> {
    let response = reqwest::Client::new()
        .head(format!("http://{PLAIN_REGISTRY}/v2/{repository}/manifests/{tag}"))
        .header(
            "accept",
            "application/vnd.docker.distribution.manifest.v2+json, application/vnd.oci.image.manifest.v1+json",
        )
        .send()
        .await
        .expect("the test bed's registry answers (bash .ci/testbed up)");
    if !response.status().is_success() {
        return None;
    }
    response
        .headers()
        .get("docker-content-digest")
        .map(|d| d.to_str().unwrap().to_string())
}

fn docker(args: &[&str]) -> String {
    let output = Command::new(testbed("GANTRY_TEST_DOCKER"))
        .env("DOCKER_HOST", testbed("GANTRY_TEST_DOCKER_HOST"))
        .args(args)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "docker {args:?}: {}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn run(program: &str, args: &[&str]) {
    let status = Command::new(program).args(args).status().unwrap();
    assert!(status.success(), "{program} {args:?}: {status}");
}

/// Copies `source` (followed if a symbolic link) to the same absolute path under `root`.
fn copy_into(root: &Path, source: &Path) {
    let target = root.join(source.strip_prefix("/").unwrap());
    std::fs::create_dir_all(target.parent().unwrap()).unwrap();
    std::fs::copy(source, &target)
        .unwrap_or_else(|err| panic!("copying {}: {err}", source.display()));
}

/// Every library `ldd` names for `file`, and the dynamic loader.
fn libraries(file: &Path, into: &mut BTreeSet<PathBuf>) {
    let output = Command::new("ldd").arg(file).output().unwrap();
    assert!(output.status.success(), "ldd {}", file.display());
    for line in String::from_utf8_lossy(&output.stdout).lines() {
        let path = match line.split_once("=>") {
            Some((_, right)) => right.split_whitespace().next(),
            None => line.split_whitespace().next(),
        };
        if let Some(path) = path.filter(|p| p.starts_with('/')) {
            into.insert(PathBuf::from(path));
        }
    }
}

fn build_and_push(reference: &str) {
    let context = tempfile::tempdir().unwrap();
    let root = context.path().join("rootfs");
    let mut loaded = BTreeSet::new();
    for program in PROGRAMS {
        let path = Path::new(BIN).join(program);
        copy_into(&root, &path);
        libraries(&path, &mut loaded);
    }
    // The server's modules (PL/pgSQL, Snowball dictionaries, encoding conversions, …), without
    // the LLVM JIT (jit is off: libLLVM is not copied) and the build files.
    std::fs::create_dir_all(root.join("usr/lib/postgresql/15")).unwrap();
    run(
        "cp",
        &[
            "-a",
            LIB,
            root.join("usr/lib/postgresql/15").to_str().unwrap(),
        ],
    );
    let lib = root.join("usr/lib/postgresql/15/lib");
    for unwanted in ["bitcode", "pgxs", "llvmjit.so", "llvmjit_types.bc"] {
        let path = lib.join(unwanted);
        if path.is_dir() {
            std::fs::remove_dir_all(&path).unwrap();
        } else if path.exists() {
            std::fs::remove_file(&path).unwrap();
        }
    }
    for module in std::fs::read_dir(&lib).unwrap() {
        let module = module.unwrap().path();
        if module.extension().is_some_and(|e| e == "so") {
            libraries(
                &Path::new(LIB).join(module.file_name().unwrap()),
                &mut loaded,
            );
        }
    }
    for library in &loaded {
        copy_into(&root, library);
    }
    std::fs::create_dir_all(root.join("usr/share/postgresql")).unwrap();
    run(
        "cp",
        &[
            "-a",
            SHARE,
            root.join("usr/share/postgresql").to_str().unwrap(),
        ],
    );
    // Debian's server reads time zones from the system's tzdata: UTC is enough here.
    copy_into(&root, Path::new("/usr/share/zoneinfo/Etc/UTC"));
    std::os::unix::fs::symlink("Etc/UTC", root.join("usr/share/zoneinfo/UTC")).unwrap();
    std::fs::write(
        context.path().join("Dockerfile"),
        format!(
            r#"FROM {base}
COPY rootfs/ /
RUN echo 'postgres:x:{UID}:{UID}:PostgreSQL:/var/lib/postgresql:/bin/sh' >> /etc/passwd \
 && echo 'postgres:x:{UID}:' >> /etc/group \
 && mkdir -p /var/lib/postgresql/data /var/run/postgresql \
 && chown -R {UID}:{UID} /var/lib/postgresql /var/run/postgresql \
 && chmod 2775 /var/run/postgresql
ENV PATH=/usr/lib/postgresql/15/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    PGDATA=/var/lib/postgresql/data \
    TZ=UTC \
    LANG=C
LABEL org.opencontainers.image.description="gantry test image: the host's Debian PostgreSQL 15 on the test bed's busybox" \
      gantry.test/recipe="{RECIPE}"
USER {UID}:{UID}
EXPOSE 5432
CMD ["postgres"]
"#,
            base = testbed("GANTRY_TEST_BASE_IMAGE"),
        ),
    )
    .unwrap();
    docker(&[
        "build",
        "--quiet",
        "--tag",
        reference,
        context.path().to_str().unwrap(),
    ]);
    // A real cluster of its own in the image: initdb, start, a query, stop.
    let answer = docker(&[
        "run",
        "--rm",
        "--network",
        "none",
        reference,
        "sh",
        "-c",
        "set -e; initdb -D /tmp/check -U check --auth=trust -E UTF8 --locale=C >/dev/null; \
         pg_ctl -D /tmp/check -o '-c listen_addresses= -c unix_socket_directories=/tmp' -w start >/dev/null; \
         psql -h /tmp -U check -d postgres -Atc 'select 40 + 2'; \
         pg_ctl -D /tmp/check -m fast -w stop >/dev/null",
    ]);
    assert_eq!(answer.trim(), "42", "{reference} does not run PostgreSQL");
    docker(&["push", reference]);
}
