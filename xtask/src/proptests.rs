//! Properties of the editors over generated inputs: parse, edit, re-parse;
//! add then remove gives back the same bytes; the parsers never panic.

use proptest::prelude::*;

use crate::edit;
use crate::edit::compose as edit_compose;
use crate::model::{cnf, compose, nginx, yaml};

fn none(_: &str) -> Option<String> {
    None
}

/// A compose file with a random number of services, comments, blank
/// lines between entries or not, and a trailing section or not.
fn compose_file() -> impl Strategy<Value = String> {
    (
        proptest::collection::vec("[a-z][a-z0-9-]{0,10}", 0..6),
        any::<bool>(),
        any::<bool>(),
        proptest::option::of("[ a-zA-Z0-9:,.-]{0,30}"),
    )
        .prop_map(|(names, spaced, trailing, comment)| {
            let mut names = names;
            names.sort();
            names.dedup();
            let mut s = String::from("# stack\nx-anchor: &a\n  restart: always\n\nservices:\n");
            for (i, n) in names.iter().enumerate() {
                if spaced && i > 0 {
                    s.push('\n');
                }
                s.push_str(&format!("  {n}:\n    <<: *a\n    image: img/{n}:1   # c\n    networks: [pg-network]\n"));
                if let Some(c) = &comment {
                    s.push_str(&format!("    # {c}\n"));
                }
            }
            if trailing {
                s.push_str("\nnetworks:\n  pg-network:\n");
            }
            s
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, .. ProptestConfig::default() })]

    #[test]
    fn compose_add_then_remove_is_identity(src in compose_file(), name in "[a-z][a-z0-9]{0,8}-new") {
        let block = format!("  {name}:\n    image: x\n    networks:\n      - pg-network\n");
        let added = edit_compose::insert_entry(&src, "services", &block).unwrap();
        let c = compose::Compose::parse(&added, &none).unwrap();
        prop_assert!(c.service(&name).is_some());
        let before = compose::Compose::parse(&src, &none).unwrap();
        prop_assert_eq!(c.services.len(), before.services.len() + 1);
        prop_assert_eq!(edit_compose::remove_entry(&added, "services", &name, false).unwrap(), src.clone());
        let vols = edit_compose::insert_entry(&src, "volumes", &format!("  {name}-data:\n")).unwrap();
        prop_assert_eq!(edit_compose::remove_entry(&vols, "volumes", &format!("{name}-data"), true).unwrap(), src);
    }

    #[test]
    fn cnf_add_then_remove_is_identity(names in proptest::collection::vec("[a-z][a-z0-9-]{0,12}", 0..8), extra in "[ #a-z]{0,20}") {
        let mut src = format!("# {extra}\n[ req ]\nprompt = no\n\n[ alt_names ]\n");
        for (i, n) in names.iter().enumerate() {
            src.push_str(&format!("DNS.{} = {n}\n", i + 1));
        }
        src.push_str("\n[ other ]\nk = v\n");
        let c = cnf::Cnf::parse(&src).unwrap();
        let added = edit::cnf::add_dns(&src, &c, "zz-new");
        let c2 = cnf::Cnf::parse(&added).unwrap();
        let a = c2.dns("zz-new").unwrap();
        prop_assert_eq!(a.index as usize, names.len() + 1);
        prop_assert_eq!(edit::cnf::remove_lines(&added, &[a.line]), src);
    }

    #[test]
    fn nginx_locations_parse_back(name in "[a-z][a-z0-9-]{0,20}", path in "/[a-z0-9/_-]{0,20}", port in 1u16.., https in any::<bool>(), grpc in any::<bool>()) {
        let loc = edit::nginx::render_location(&name, &path, port, https, grpc);
        let routes = nginx::parse_routes(&loc, "x.conf").unwrap();
        prop_assert_eq!(routes.len(), 1);
        prop_assert_eq!(&routes[0].host, &name);
        prop_assert_eq!(routes[0].port, port);
        prop_assert_eq!(&routes[0].path, &path);
    }

    #[test]
    fn parsers_never_panic_on_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let s = String::from_utf8_lossy(&bytes);
        let _ = yaml::parse(&s);
        let _ = compose::Compose::parse(&s, &none);
        let _ = cnf::Cnf::parse(&s);
        let _ = nginx::parse_routes(&s, "f");
        let _ = crate::model::cargo_toml::parse(&s);
        let _ = crate::model::der::parse(&bytes);
    }

    #[test]
    fn parsers_never_panic_on_yamlish_text(s in "[a-z:\\-\\[\\]{}&*!|>'\" \n#,]{0,200}") {
        let _ = compose::Compose::parse(&s, &none);
        let _ = edit_compose::insert_entry(&s, "services", "  x:\n    image: y\n");
        let _ = edit_compose::remove_entry(&s, "services", "x", true);
    }
}
