//! Rules on the service folders under `src/backend_services/`.

use crate::diag::{Diagnostic, Error, Rule};
use crate::model::compose;
use crate::model::repo::{Repo, SERVICES_DIR};

/// MR001: a service folder has server.py or main.py, and a Dockerfile.
pub fn service_folder(repo: &Repo, out: &mut Vec<Diagnostic>) -> Result<(), Error> {
    for d in &repo.service_dirs {
        let dir = repo.root.join(SERVICES_DIR).join(d);
        let rel = format!("{SERVICES_DIR}/{d}");
        // A frontend service keeps its API's code in Backend/.
        let has_entry =
            |d: &std::path::Path| d.join("server.py").exists() || d.join("main.py").exists();
        if !has_entry(&dir) && !has_entry(&dir.join(crate::plan::scaffold::BACKEND_DIR)) {
            out.push(Diagnostic::finding(
                Rule::ServiceFolder,
                &rel,
                0,
                format!("service `{d}` has no server.py or main.py (nor Backend/server.py or Backend/main.py)"),
                format!("add {rel}/server.py"),
            ));
        }
        if !dir.join("Dockerfile").exists() {
            out.push(Diagnostic::finding(
                Rule::ServiceFolder,
                &rel,
                0,
                format!("service `{d}` has no Dockerfile"),
                format!("add {rel}/Dockerfile"),
            ));
        }
    }
    Ok(())
}

/// MR002: every folder under src/backend_services/ has a compose entry.
pub fn folder_in_compose(repo: &Repo, out: &mut Vec<Diagnostic>) -> Result<(), Error> {
    for d in repo
        .service_dirs
        .iter()
        .filter(|d| repo.compose.service(d).is_none())
    {
        let rel = format!("{SERVICES_DIR}/{d}");
        out.push(Diagnostic::finding(
            Rule::FolderInCompose,
            &rel,
            0,
            format!("folder `{d}` has no entry in {}", compose::FILE),
            format!("delete {rel}/ if it is left over, or add its compose entry (as `cargo xtask add-service` writes it)"),
        ));
    }
    Ok(())
}
