//! Command-line values named by the libraries: a workload, a fault kind, a checker, a quorum
//! level each list their names (`ALL`, `as_str`) and one-line help, and `named!` turns such a
//! list into a clap parser, so `--help` shows every choice and the libraries need no clap.

/// A clap value parser for a type with `ALL: &[Self]`, `as_str(self)` and `help(self)`.
macro_rules! named {
    ($type:ty) => {
        clap::builder::TypedValueParser::map(
            clap::builder::PossibleValuesParser::new(
                <$type>::ALL.iter().map(|value| {
                    clap::builder::PossibleValue::new(value.as_str()).help(value.help())
                }),
            ),
            |name: String| {
                <$type>::ALL
                    .iter()
                    .copied()
                    .find(|value| value.as_str() == name)
                    .expect("clap accepted only listed names")
            },
        )
    };
}

pub(crate) use named;
