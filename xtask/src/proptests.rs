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
                s.push_str(&format!(
                    "  {n}:\n    <<: *a\n    image: img/{n}:1   # c\n    networks: [pg-network]\n"
                ));
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
        let added = edit::cnf::add_dns(&src, &c, "zz-new").unwrap();
        let c2 = cnf::Cnf::parse(&added).unwrap();
        let a = c2.dns("zz-new").unwrap();
        prop_assert_eq!(a.index as usize, names.len() + 1);
        prop_assert_eq!(edit::cnf::remove_lines(&added, &[a.line]), src);
    }

    /// The openssl.cnf grammar: every way an entry of the names section can
    /// be written (quoted, escaped `#`, `\` continuation, trailing comment,
    /// unnumbered key, other kinds), in LF or CRLF, with or without a final
    /// newline: each value reads back decoded, and add then remove gives
    /// back every byte in the file's own line endings.
    #[test]
    fn cnf_real_grammar_round_trips(
        entries in proptest::collection::vec(("[a-z][a-z0-9]{0,8}", 0u8..6, proptest::option::of("[ a-z{}#]{0,12}")), 0..8),
        crlf in any::<bool>(),
        final_nl in any::<bool>(),
    ) {
        let mut src = String::from("# generated\n[ req ]\ndistinguished_name = dn\nx509_extensions = ext\n[ dn ]\nCN = x\n[ ext ]\nsubjectAltName = @san\n[ san ]\n");
        let mut want = vec![];
        for (i, (v, form, comment)) in entries.iter().enumerate() {
            let (line, value) = match form {
                0 => (format!("DNS.{i} = {v}"), v.clone()),
                1 => (format!("DNS.{i} = \"{v} # kept\""), format!("{v} # kept")),
                2 => (format!("DNS.{i} = {v}\\#x"), format!("{v}#x")),
                3 => (format!("DNS.{i} = {v}\\\n{v}"), format!("{v}{v}")),
                4 => (format!("email.{i} = {v}@example.com"), format!("{v}@example.com")),
                _ => ("DNS = plain".to_string(), "plain".to_string()),
            };
            let c = comment.as_ref().map(|c| format!("   # {c}")).unwrap_or_default();
            src.push_str(&format!("{line}{c}\n"));
            want.push(value);
        }
        src.push_str("[ tail ]\nk = v\n");
        if !final_nl {
            src.pop();
        }
        if crlf {
            src = src.replace('\n', "\r\n");
        }
        let c = cnf::Cnf::parse(&src).unwrap();
        prop_assert_eq!(c.section.as_str(), "san");
        let got: Vec<String> = c.alt_names.iter().map(|a| a.value.clone()).collect();
        prop_assert_eq!(got, want);
        let added = edit::cnf::add_dns(&src, &c, "zz-new").unwrap();
        if crlf {
            prop_assert!(!added.replace("\r\n", "").contains('\n'), "LF in a CRLF file: {:?}", added);
        }
        let c2 = cnf::Cnf::parse(&added).unwrap();
        let a = c2.dns("zz-new").unwrap();
        prop_assert_eq!(edit::cnf::remove_lines(&added, &a.lines()), src);
    }

    /// The NGINX grammar around a route: quoted strings holding braces and
    /// `;`, comments holding braces and quotes, `${var}`, `if` and `map`
    /// blocks, regex locations, CRLF. The route is found, on its line.
    #[test]
    fn nginx_real_grammar_finds_the_route(
        quoted in "[ a-z{};]{0,12}",
        comment in "[ a-z{}'\"]{0,12}",
        regex in "[a-z]{1,6}",
        crlf in any::<bool>(),
        port in 1u16..,
    ) {
        let mut src = format!(
            "# {comment}\nhttp {{\n  map $http_x $y {{ default \"{quoted}\"; '' 0; }}\n  server {{\n    listen 80; # {comment}\n    location ~* \\.({regex})$ {{ return 200 \"{quoted}\"; }}\n    location /app/ {{\n      proxy_set_header X-Host ${{host}};\n      if ($request_method = POST) {{ return 405; }}\n      proxy_pass http://svc:{port};\n    }}\n  }}\n}}\n"
        );
        if crlf {
            src = src.replace('\n', "\r\n");
        }
        let routes = nginx::parse_routes(&src, "f").unwrap();
        let r: Vec<_> = routes.iter().filter(|r| r.path == "/app/").collect();
        prop_assert_eq!(r.len(), 1);
        prop_assert_eq!((r[0].host.as_str(), r[0].port, r[0].line), ("svc", port, 7));
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

/// Pieces of the port and interpolation syntaxes real compose files use
/// (ranges, host addresses, protocols, every `${...}` form), for
/// `wide_compose_file`.
const PORTS: &[&str] = &[
    "\"8080:80\"",
    "\"$BIND:80/tcp\"",
    "\"3001-3005\"",
    "\"9000-9001:9000-9001\"",
    "'${MIN:-20000}-${MAX:-20050}:20000-20050/udp'",
    "\"127.0.0.1::50052\"",
    "\"[::1]:7000:70\"",
    "\"53:53/udp\"",
    "7100",
];
const ENVS: &[&str] = &[
    "\"${A}\"",
    "\"$A\"",
    "\"${A:-d}\"",
    "\"${A-d}\"",
    "\"${A:+x}\"",
    "\"${A+x}\"",
    "\"${A:?e}\"",
    "\"${A?e}\"",
    "\"$$A\"",
    "\"${A:-${B:-n}}\"",
];

/// A compose file built from those pieces: 2- or 4-space indentation,
/// networks/volumes sections at their own indentation (or absent), long and
/// short port syntax, every interpolation form, both env_file forms, both
/// depends_on forms, a flow sequence closed at its key's indentation.
fn wide_compose_file() -> impl Strategy<Value = (String, u8)> {
    (
        proptest::collection::vec(
            (
                0..PORTS.len(),
                0..ENVS.len(),
                any::<bool>(),
                any::<bool>(),
                any::<bool>(),
                any::<bool>(),
            ),
            1..5,
        ),
        prop_oneof![Just(2usize), Just(4usize)],
        prop_oneof![Just(0usize), Just(1usize), Just(2usize), Just(4usize)],
        0u8..3,
        any::<bool>(),
    )
        .prop_map(|(svcs, unit, sec_pad, form, final_nl)| {
            let p = |n: usize| " ".repeat(n * unit);
            let mut s = String::from("services:\n");
            for (i, (port, env, long_port, env_long, dep_map, flow)) in svcs.iter().enumerate() {
                s += &format!("{}s{i}:\n{}image: busybox\n{}ports:\n", p(1), p(2), p(2));
                if *long_port {
                    s += &format!(
                        "{}- target: 80\n{}  published: \"{}\"\n{}  protocol: udp\n",
                        p(3),
                        p(3),
                        7000 + i,
                        p(3)
                    );
                } else {
                    s += &format!("{}- {}\n", p(3), PORTS[*port]);
                }
                s += &format!("{}environment:\n{}X: {}\n", p(2), p(3), ENVS[*env]);
                if *env_long {
                    s += &format!(
                        "{}env_file:\n{}- path: ./x.env\n{}  required: false\n",
                        p(2),
                        p(3),
                        p(3)
                    );
                } else {
                    s += &format!("{}env_file: [./y.env]\n", p(2));
                }
                if i > 0 {
                    if *dep_map {
                        s += &format!(
                            "{}depends_on:\n{}s0:\n{}condition: service_started\n",
                            p(2),
                            p(3),
                            p(4)
                        );
                    } else {
                        s += &format!("{}depends_on: [s0]\n", p(2));
                    }
                }
                if *flow {
                    s += &format!(
                        "{}command: [\n{}\"sh\", \"-c\", \"true\"\n{}]\n",
                        p(2),
                        p(3),
                        p(2)
                    );
                }
                s += &format!("{}networks: [pg-network]\n", p(2));
            }
            if sec_pad > 0 {
                s += &format!(
                    "networks:\n{}pg-network:\nvolumes:\n{}data:\n{}driver: local\n",
                    " ".repeat(sec_pad),
                    " ".repeat(sec_pad),
                    " ".repeat(sec_pad * 2)
                );
            }
            if !final_nl {
                s.pop();
            }
            let s = match form {
                1 => s.replace('\n', "\r\n"),
                2 => format!("\u{feff}{s}"),
                _ => s,
            };
            (s, form)
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, .. ProptestConfig::default() })]

    /// Read, then add a service and its declarations the way add-service
    /// does (each section's own indentation, the file's own form), then
    /// remove them: every byte comes back, and each step reads.
    #[test]
    fn every_syntax_reads_and_add_remove_is_identity((src, _form) in wide_compose_file(), name in "[a-z][a-z0-9]{0,8}-new") {
        let env = |k: &str| match k { "BIND" => Some("9000".to_string()), "A" => Some("1".to_string()), _ => None };
        let (form, plain) = edit_compose::Form::plain(&src);
        let before = compose::Compose::parse(&plain, &env).unwrap();
        let unit = edit_compose::indent_unit(&plain);
        let pad = " ".repeat(unit);
        let block = format!("{pad}{name}:\n{pad}{pad}image: x\n{pad}{pad}networks:\n{pad}{pad}{pad}- grpc-network\n{pad}{pad}volumes:\n{pad}{pad}{pad}- {name}-data:/d\n");
        let mut text = edit_compose::insert_entry(&plain, "services", &block).unwrap();
        for (sec, n) in [("networks", "grpc-network".to_string()), ("volumes", format!("{name}-data"))] {
            let sp = " ".repeat(edit_compose::section_indent(&text, sec, unit));
            text = edit_compose::insert_entry(&text, sec, &format!("{sp}{n}:\n")).unwrap();
        }
        let change = edit_compose::Change { added: vec![("services", name.clone()), ("networks", "grpc-network".into()), ("volumes", format!("{name}-data"))], removed: vec![], changed: vec![] };
        // Both ways: the old text parsed again, and its tree handed over.
        let tree = edit_compose::verify_edit(&plain, None, &text, &change, "docker-compose.yml").unwrap();
        let old_tree = compose::Compose::tree(&plain).unwrap();
        edit_compose::verify_edit(&plain, old_tree.as_ref(), &text, &change, "docker-compose.yml").unwrap();
        let mid = compose::Compose::from_tree(tree.as_ref(), &env).unwrap();
        prop_assert_eq!(format!("{:?}", mid), format!("{:?}", compose::Compose::parse(&text, &env).unwrap()));
        prop_assert_eq!(mid.services.len(), before.services.len() + 1);
        let written = form.restore(&text);
        // Remove, from the written bytes, as remove-service does.
        let (form2, plain2) = edit_compose::Form::plain(&written);
        let mut back = edit_compose::remove_entry(&plain2, "services", &name, false).unwrap();
        // In remove-service's order: networks, then volumes.
        for (sec, n) in [("networks", "grpc-network".to_string()), ("volumes", format!("{name}-data"))] {
            back = edit_compose::remove_entry(&back, sec, &n, true).unwrap();
        }
        prop_assert_eq!(form2.restore(&back), src);
    }
}

/// A compose file whose `nginx` has a `volumes:` block list of generated
/// items (short and long form, comments between, its own indentation, the
/// file's form), for the page mount's editor.
fn nginx_volumes_file() -> impl Strategy<Value = String> {
    (
        1usize..5,
        2usize..5,
        any::<bool>(),
        proptest::collection::vec((any::<bool>(), any::<bool>(), "[a-z][a-z0-9-]{0,8}"), 1..5),
        any::<bool>(),
    )
        .prop_map(|(unit, extra, same_level, items, tail)| {
            let p = |n: usize| " ".repeat(unit * n);
            let item_pad = if same_level { p(2) } else { p(2) + &" ".repeat(extra) };
            let mut s = format!("services:\n{}nginx:\n{}image: nginx\n{}volumes:\n", p(1), p(2), p(2));
            for (long, comment, name) in items {
                if comment {
                    s += &format!("{item_pad}# {name}\n");
                }
                if long {
                    s += &format!("{item_pad}- type: bind\n{item_pad}  source: ./{name}\n{item_pad}  target: /{name}\n");
                } else {
                    s += &format!("{item_pad}- ./{name}:/{name}:ro   # why\n");
                }
            }
            s += &format!("{}ports: [\"8443:443\"]\n", p(2));
            if tail {
                s += &format!("{}web:\n{}image: w\n\nnetworks:\n{}web-network:\n", p(1), p(2), p(1));
            }
            s
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, .. ProptestConfig::default() })]

    /// The page mount lands as the last item of NGINX's list (as YAML reads
    /// it), and taking it out gives back every byte.
    #[test]
    fn the_page_mount_is_added_and_removed_byte_for_byte(src in nginx_volumes_file(), name in "[a-z][a-z0-9-]{0,8}") {
        let item = edit::nginx::frontend_mount(&name, &format!("/{name}/"));
        let added = edit_compose::add_list_item(&src, "nginx", "volumes", &item).unwrap();
        let tree = yaml::parse(&added).unwrap().unwrap();
        let vols = tree.get("services").unwrap().get("nginx").unwrap().get("volumes").unwrap().as_seq().unwrap();
        let before = yaml::parse(&src).unwrap().unwrap();
        let old = before.get("services").unwrap().get("nginx").unwrap().get("volumes").unwrap().as_seq().unwrap();
        prop_assert_eq!(vols.len(), old.len() + 1);
        prop_assert_eq!(vols.last().unwrap().as_str(), Some(item.as_str()));
        let change = edit_compose::Change { added: vec![], removed: vec![], changed: vec![("services", "nginx".to_string())] };
        edit_compose::verify_edit(&src, None, &added, &change, "docker-compose.yml").unwrap();
        prop_assert!(edit_compose::has_list_item(&added, "nginx", "volumes", &item));
        prop_assert_eq!(edit_compose::remove_list_item(&added, "nginx", "volumes", &item).unwrap(), src);
    }
}
