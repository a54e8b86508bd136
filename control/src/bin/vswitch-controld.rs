//! vswitch-controld: the control process (arrives with the control issue).

fn main() -> anyhow::Result<()> {
    anyhow::bail!("vswitch-controld: not built yet (see issue 5)")
}
