//! The `quarry` binary. All logic lives in the libraries; see `quarry_app::cli`.

fn main() -> anyhow::Result<()> {
    quarry_app::cli::main()
}
