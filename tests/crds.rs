//! The CRD YAML under `manifests/crds/` is generated from the Rust types;
//! this fails when the committed files drift. Regenerate with
//! `SODGUARD_UPDATE_CRDS=1 cargo test --test crds`.

use std::path::PathBuf;

#[test]
fn committed_crds_match_the_rust_types() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let update = std::env::var_os("SODGUARD_UPDATE_CRDS").is_some();
    let mut drift = Vec::new();
    // The chart installs the same CRDs from its own crds/ folder.
    let files = sodguard::crd::crd_files();
    for (dir, (name, yaml)) in ["manifests/crds", "charts/sodguard/crds"]
        .into_iter()
        .flat_map(|d| {
            files
                .iter()
                .map(|f| (root.join(d), f.clone()))
                .collect::<Vec<_>>()
        })
    {
        let path = dir.join(&name);
        if update {
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(&path, &yaml).unwrap();
            continue;
        }
        match std::fs::read_to_string(&path) {
            Ok(committed) if committed == yaml => {}
            Ok(_) => drift.push(format!("{} differs from the generated CRD", path.display())),
            Err(e) => drift.push(format!("{}: {e}", path.display())),
        }
    }
    assert!(
        drift.is_empty(),
        "{}\nregenerate with: SODGUARD_UPDATE_CRDS=1 cargo test --test crds",
        drift.join("\n")
    );
}

#[test]
fn crd_command_prints_both() {
    let all = sodguard::crd::crds_yaml();
    for (_, yaml) in sodguard::crd::crd_files() {
        assert!(all.contains(&yaml));
    }
    assert!(all.contains("name: sodpolicies.sodguard.io"));
    assert!(all.contains("name: sodexceptions.sodguard.io"));
    assert!(all.contains("name: accessgrants.sodguard.io"));
    assert!(all.contains("name: clusteraccessgrants.sodguard.io"));
    assert!(all.contains("name: accessgrantpolicies.sodguard.io"));
}
