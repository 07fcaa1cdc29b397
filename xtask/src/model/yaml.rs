//! The YAML tree every reader uses: the `xtask-yaml` crate (xtask/yaml/),
//! kept apart so the dev profile can optimise saphyr's scanner (see there).

pub use xtask_yaml::*;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_merge_keys_and_flow() {
        let src = "x-base: &base\n  restart: always\nservices:\n  a:\n    <<: *base\n    ports: [\"1:1\"]\n";
        let root = parse(src).unwrap().unwrap();
        let a = root.get("services").unwrap().get("a").unwrap();
        assert_eq!(a.line, 5);
        assert_eq!(a.get("restart").unwrap().as_str(), Some("always"));
        let ports = a.get("ports").unwrap();
        assert!(ports.flow);
        assert_eq!(ports.line, 6);
    }

    #[test]
    fn rejects_duplicates_and_tabs() {
        let e = parse("a: 1\nb: 2\na: 3\n").unwrap_err();
        assert_eq!(e.line, 3);
        assert!(e.msg.contains("duplicate key `a`"), "{}", e.msg);
        let e = parse("a:\n\tb: 1\n").unwrap_err();
        assert_eq!(e.line, 2);
    }

    #[test]
    fn compose_quirks_bom_tabs_in_block_scalars_and_loose_flow() {
        let root = parse("\u{feff}a:\n  b: |\n    x \t y\n     \tz\n  t: [\n    1, 2\n  ]\n  u: {\n  k: v\n  }\n").unwrap().unwrap();
        let a = root.get("a").unwrap();
        assert_eq!(a.get("b").unwrap().as_str(), Some("x \t y\n \tz\n"));
        assert_eq!(a.get("t").unwrap().as_seq().unwrap().len(), 2);
        assert_eq!(a.get("t").unwrap().line, 5);
        assert!(a.get("t").unwrap().flow);
        assert_eq!(a.get("u").unwrap().get("k").unwrap().line, 9);
    }

    #[test]
    fn bounds_aliases_and_depth() {
        let mut bomb = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x]\n");
        for i in 1..9 {
            bomb += &format!(
                "a{i}: &a{i} [{}]\n",
                vec![format!("*a{}", i - 1); 9].join(",")
            );
        }
        let e = parse(&bomb).unwrap_err();
        assert!(e.msg.contains("alias bomb") && e.line > 1, "{e:?}");
        let deep = format!(
            "a: {}{}\n",
            "[".repeat(MAX_DEPTH + 1),
            "]".repeat(MAX_DEPTH + 1)
        );
        let e = parse(&deep).unwrap_err();
        assert!(e.msg.contains("nested") && e.line == 1, "{e:?}");
        parse(&format!(
            "a: {}{}\n",
            "[".repeat(MAX_DEPTH - 2),
            "]".repeat(MAX_DEPTH - 2)
        ))
        .unwrap();
    }

    #[test]
    fn syntax_error_has_a_line() {
        let e = parse("a: [1, 2\nb: 3\n").unwrap_err();
        assert!(e.line >= 1, "{e:?}");
    }
}
