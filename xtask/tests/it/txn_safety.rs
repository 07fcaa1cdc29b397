//! The transaction's promises that need no kill: a failure mid-commit puts
//! every file back with its mode and owner (keys included), symlinks never
//! redirect a write out of the repository, and commands act only in a
//! repository they recognise, the nearest one, and say which.

use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::{Command, Output};

use crate::common::*;
use crate::fsnap::*;

fn owner_mode(p: &Path) -> (u32, u32) {
    let m = std::fs::metadata(p).unwrap();
    (m.uid(), m.mode() & 0o777)
}

#[test]
fn failed_remove_service_puts_keys_back_with_their_mode_and_owner() {
    let c = copy("txn-rm-rollback");
    ok(&xtask(&c.root, &["certs"]));
    ok(&xtask(
        &c.root,
        &[
            "add-service",
            "nsvc",
            "--grpc",
            "--https",
            "--public",
            "/nsvc/",
        ],
    ));
    let key = c.root.join("certs/services/nsvc/key.pem");
    let want_owner = if is_root() {
        10001
    } else {
        unsafe { libc::geteuid() }
    };
    assert_eq!(
        owner_mode(&key),
        (want_owner, 0o600),
        "the service key as add-service leaves it"
    );
    let before = snap(&c.root);
    // Fail at the last step before the commit marker (every file already
    // deleted or replaced), then at a rename in the middle.
    for at in [
        "commit",
        "rmdir:src/backend_services/nsvc",
        "unlink:certs/services/nsvc/key.pem",
        "rename:certs/server/cert.pem",
    ] {
        let o = xtask_env(
            &c.root,
            &["remove-service", "nsvc"],
            &[("XTASK_FAIL_AT", at)],
        );
        assert_eq!(o.status.code(), Some(2), "{at}: {}", text(&o));
        assert!(text(&o).contains("put back"), "{at}: {}", text(&o));
        assert_snap_eq(
            &before,
            &snap(&c.root),
            &format!("remove-service failing at {at}"),
        );
        assert_eq!(
            owner_mode(&key),
            (want_owner, 0o600),
            "{at}: the key came back exposed"
        );
    }
    ok(&xtask(&c.root, &["remove-service", "nsvc"]));
    assert!(
        !c.root.join("src/backend_services/nsvc").exists()
            && !c.root.join("certs/services/nsvc").exists()
    );
}

#[test]
fn failed_certs_puts_every_key_back() {
    let c = copy("txn-certs-rollback");
    ok(&xtask(&c.root, &["certs"]));
    ok(&xtask(&c.root, &["add-service", "nsvc", "--https"]));
    let before = snap(&c.root);
    for at in ["commit", "rename:certs/services/nsvc/key.pem", "journal"] {
        let o = xtask_env(&c.root, &["certs", "--force"], &[("XTASK_FAIL_AT", at)]);
        assert_eq!(o.status.code(), Some(2), "{at}: {}", text(&o));
        assert_snap_eq(
            &before,
            &snap(&c.root),
            &format!("certs --force failing at {at}"),
        );
    }
    for k in [
        "certs/ca/ca.key",
        "certs/server/key.pem",
        "certs/services/nsvc/key.pem",
        "certs/services/accounts/key.pem",
    ] {
        assert_eq!(owner_mode(&c.root.join(k)).1, 0o600, "{k}");
    }
    ok(&xtask(&c.root, &["certs", "--force"]));
    assert!(
        !c.root.join(".xtask-txn").exists(),
        "the journal is gone after a commit"
    );
}

#[test]
fn a_planted_link_at_a_new_files_path_cannot_redirect_the_write() {
    let c = copy("txn-planted");
    ok(&xtask(&c.root, &["certs"]));
    let outside = std::env::temp_dir().join(format!("xtask-outside-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&outside);
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::write(outside.join("existing"), "outside\n").unwrap();
    // The endpoint file of a new service, dangling and pointing at a file.
    for target in [outside.join("absent"), outside.join("existing")] {
        let link = c.root.join("nginx/locations/n.conf");
        let _ = std::fs::remove_file(&link);
        symlink(&target, &link).unwrap();
        let before = snap(&c.root);
        let o = xtask(
            &c.root,
            &["add-service", "nsvc", "--https", "--public", "/nsvc/"],
        );
        assert_eq!(o.status.code(), Some(2), "{}", text(&o));
        assert!(
            text(&o).contains("nginx/locations/n.conf"),
            "the message names the link: {}",
            text(&o)
        );
        assert_snap_eq(&before, &snap(&c.root), "planted link");
        assert!(!outside.join("absent").exists());
        assert_eq!(
            std::fs::read_to_string(outside.join("existing")).unwrap(),
            "outside\n"
        );
    }
    std::fs::remove_file(c.root.join("nginx/locations/n.conf")).unwrap();
    // The staging area itself, planted as a link.
    symlink(&outside, c.root.join(".xtask-txn")).unwrap();
    let o = xtask(&c.root, &["certs", "--force"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains(".xtask-txn"), "{}", text(&o));
    std::fs::remove_file(c.root.join(".xtask-txn")).unwrap();
    // A key's path, and a folder on the way to one.
    std::fs::remove_file(c.root.join("certs/server/key.pem")).unwrap();
    symlink(outside.join("key"), c.root.join("certs/server/key.pem")).unwrap();
    let o = xtask(&c.root, &["certs"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("certs/server/key.pem"), "{}", text(&o));
    assert!(!outside.join("key").exists());
    std::fs::remove_file(c.root.join("certs/server/key.pem")).unwrap();
    std::fs::remove_dir_all(c.root.join("certs/services")).unwrap();
    symlink(&outside, c.root.join("certs/services")).unwrap();
    let o = xtask(&c.root, &["certs"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("certs/services"), "{}", text(&o));
    let left: Vec<_> = std::fs::read_dir(&outside)
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert_eq!(left.len(), 1, "nothing written outside: {left:?}");
    let _ = std::fs::remove_dir_all(&outside);
}

#[test]
fn a_linked_compose_file_stays_a_link_and_its_target_gets_the_change() {
    let c = copy("txn-linked");
    ok(&xtask(&c.root, &["certs"]));
    std::fs::create_dir_all(c.root.join("config")).unwrap();
    for f in ["docker-compose.yml", "openssl.cnf"] {
        std::fs::rename(c.root.join(f), c.root.join("config").join(f)).unwrap();
        symlink(format!("config/{f}"), c.root.join(f)).unwrap();
    }
    std::fs::set_permissions(
        c.root.join("config/docker-compose.yml"),
        std::fs::Permissions::from_mode(0o640),
    )
    .unwrap();
    ok(&xtask(
        &c.root,
        &["add-service", "nsvc", "--grpc", "--https"],
    ));
    for f in ["docker-compose.yml", "openssl.cnf"] {
        let m = std::fs::symlink_metadata(c.root.join(f)).unwrap();
        assert!(m.file_type().is_symlink(), "{f} must stay a symlink");
        assert_eq!(
            std::fs::read_link(c.root.join(f)).unwrap(),
            Path::new("config").join(f)
        );
    }
    assert!(
        std::fs::read_to_string(c.root.join("config/docker-compose.yml"))
            .unwrap()
            .contains("  nsvc:\n")
    );
    assert!(std::fs::read_to_string(c.root.join("config/openssl.cnf"))
        .unwrap()
        .contains("= nsvc\n"));
    assert_eq!(
        owner_mode(&c.root.join("config/docker-compose.yml")).1,
        0o640,
        "the target keeps its mode"
    );
    ok(&xtask(&c.root, &["remove-service", "nsvc"]));
    assert!(std::fs::symlink_metadata(c.root.join("docker-compose.yml"))
        .unwrap()
        .file_type()
        .is_symlink());
    ok(&xtask(&c.root, &["check"]));
}

#[test]
fn a_link_to_outside_the_repository_is_refused_naming_it() {
    let c = copy("txn-outlink");
    ok(&xtask(&c.root, &["certs"]));
    let outside = std::env::temp_dir().join(format!("xtask-outside-cnf-{}", std::process::id()));
    std::fs::copy(c.root.join("openssl.cnf"), &outside).unwrap();
    std::fs::remove_file(c.root.join("openssl.cnf")).unwrap();
    symlink(&outside, c.root.join("openssl.cnf")).unwrap();
    let before = snap(&c.root);
    let cnf = std::fs::read(&outside).unwrap();
    for cmd in [
        &["add-service", "nsvc", "--https"][..],
        &["certs", "--force"],
        &["sync"],
    ] {
        let o = xtask(&c.root, cmd);
        assert_eq!(o.status.code(), Some(2), "{cmd:?}: {}", text(&o));
        assert!(text(&o).contains("openssl.cnf"), "{cmd:?}: {}", text(&o));
        assert_snap_eq(&before, &snap(&c.root), &format!("{cmd:?}"));
        assert_eq!(std::fs::read(&outside).unwrap(), cnf);
    }
    let _ = std::fs::remove_file(&outside);
}

fn xtask_in(cwd: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_xtask"))
        .current_dir(cwd)
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn a_folder_without_the_markers_is_refused() {
    let d = std::env::temp_dir().join(format!("xtask-nomarkers-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(d.join("sub")).unwrap();
    // A compose file and openssl.cnf alone do not make a monorepo.
    std::fs::write(d.join("docker-compose.yml"), "services: {}\n").unwrap();
    std::fs::write(d.join("openssl.cnf"), "[ alt_names ]\n").unwrap();
    for o in [
        xtask_in(&d.join("sub"), &["add-service", "nsvc"]),
        xtask_in(&d, &["--root", ".", "sync"]),
        xtask_in(&d, &["check"]),
    ] {
        assert_eq!(o.status.code(), Some(2), "{}", text(&o));
        assert!(
            text(&o).contains("[workspace]") && text(&o).contains("fix:"),
            "names the markers: {}",
            text(&o)
        );
    }
    let left: Vec<_> = std::fs::read_dir(&d)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(left.len(), 3, "nothing written: {left:?}");
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn the_nearest_checkout_wins_and_is_named() {
    let outer = copy("txn-outer");
    let inner_src = copy("txn-inner");
    let inner = outer.root.join("vendor/inner");
    std::fs::create_dir_all(outer.root.join("vendor")).unwrap();
    clone_tree(&inner_src.root, &inner);
    let outer_before = snap(&outer.root.join("src"));
    let o = xtask_in(
        &inner.join("src/backend_services"),
        &["add-service", "nsvc", "--grpc"],
    );
    ok(&o);
    let err = String::from_utf8_lossy(&o.stderr);
    let named = std::fs::canonicalize(&inner).unwrap();
    assert!(
        err.contains(&format!("{}", named.display())),
        "names the root it used: {err}"
    );
    assert!(inner.join("src/backend_services/nsvc/Dockerfile").exists());
    assert_snap_eq(
        &outer_before,
        &snap(&outer.root.join("src")),
        "the outer checkout",
    );
    // A folder with some markers only (a compose file) is skipped, not used.
    let part = outer.root.join("examples/partial");
    std::fs::create_dir_all(&part).unwrap();
    std::fs::write(part.join("docker-compose.yml"), "services: {}\n").unwrap();
    std::fs::write(part.join("openssl.cnf"), "[ alt_names ]\n").unwrap();
    let o = xtask_in(&part, &["add-service", "m", "--grpc"]);
    ok(&o);
    let outer_real = std::fs::canonicalize(&outer.root).unwrap();
    assert!(
        String::from_utf8_lossy(&o.stderr).contains(&format!("{}", outer_real.display())),
        "{}",
        text(&o)
    );
    assert!(outer.root.join("src/backend_services/m").exists() && !part.join("src").exists());
}

#[test]
fn staging_and_journal_are_ignored_by_git_and_by_both_build_contexts() {
    for rel in [
        ".xtask-txn/journal",
        ".xtask-txn/new-0",
        "src/backend_services/a/.x.xtask-tmp",
    ] {
        let ig = Command::new("git")
            .current_dir(workspace())
            .args(["check-ignore", "-q", "--no-index", rel])
            .status()
            .unwrap();
        assert!(ig.success(), "{rel} must be git-ignored");
    }
    for ctx in ["src", "nginx"] {
        let ig = xtask::docker::Ignore::load(&workspace().join(ctx));
        for rel in [
            ".xtask-txn/journal",
            "backend_services/a/.x.xtask-tmp",
            "locations/.a.conf.xtask-tmp",
        ] {
            assert!(ig.ignored(rel), "{ctx}/.dockerignore must exclude {rel}");
        }
    }
}
