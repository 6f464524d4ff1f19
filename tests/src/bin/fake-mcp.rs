//! The fake MCP stdio server of the tests (see `clawgate_tests::fake_mcp`).

fn main() -> std::io::Result<()> {
    clawgate_tests::fake_mcp::run_stdio()
}
