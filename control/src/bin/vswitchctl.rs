//! vswitchctl: the operator's CLI (commands arrive with the control issue).

fn main() -> anyhow::Result<()> {
    anyhow::bail!("vswitchctl: not built yet (see issue 5)")
}
