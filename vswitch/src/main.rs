//! vswitchd: the datapath process (API server to come with the control issue).

fn main() -> anyhow::Result<()> {
    anyhow::bail!("vswitchd: the datapath API server is not built yet (see issue 5)")
}
