//! `nearby-admin schema create`: creates the CQL keyspace and tables (idempotent).

use std::io::Write;

use anyhow::Context;
use clap::Subcommand;
use nearby_common::StackArgs;

/// Schema subcommands.
#[derive(Debug, Subcommand)]
pub enum SchemaAction {
    /// Create the keyspace (`--cql-keyspace`) and every table the system uses, if missing.
    Create {
        /// Replication factor of the keyspace (1 on a single node).
        #[arg(long, env = "NEARBY_CQL_REPLICATION", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=9))]
        replication: u32,
    },
}

/// Runs a schema subcommand.
pub async fn run(
    stack: &StackArgs,
    action: SchemaAction,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    match action {
        SchemaAction::Create { replication } => {
            let startup = stack.startup();
            let session = startup.cql(&stack.cql_nodes).await?;
            startup
                .retry("the CQL store to create the schema", || {
                    nearby_common::users::create_schema(&session, &stack.cql_keyspace, replication)
                })
                .await
                .with_context(|| format!("creating keyspace {}", stack.cql_keyspace))?;
            writeln!(
                out,
                "schema ready in keyspace {} (replication {replication})",
                stack.cql_keyspace
            )?;
            Ok(())
        }
    }
}
