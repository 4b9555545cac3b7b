//! `agentwire mcp`: AgentWire as tools for an AI assistant, over the Model
//! Context Protocol (the official Rust SDK, `rmcp`), on stdio. Three tools:
//!
//! - `find_services`: services on the DHT by name or by words of their
//!   description, with their prices in human units;
//! - `ask`: asks a brand's service (a chat service gets a chat request) and
//!   pays for it within the user's spending limits; the answer's text comes
//!   as progress notifications while it streams, when the client asked for
//!   progress;
//! - `channels`: the payer's channels and what was spent today.
//!
//! A failure is a tool result marked as an error, with the cause and what to do.

use std::sync::Arc;

use agentwire_protocol::account::AccountId;
use agentwire_protocol::chat::{ChatAnswer, ChatEvent, ChatRequest, EventReader};
use agentwire_protocol::pricing::Interface;
use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{
    CallToolResult, ContentBlock, Implementation, ProgressNotificationParam, RequestMetaObject, ServerCapabilities,
    ServerConfig,
};
use rmcp::{schemars, tool, tool_handler, tool_router, Peer, RoleServer, ServerHandler, ServiceExt};
use serde::Deserialize;
use serde_json::json;

use crate::catalog::{amount_text, price_text, Catalog};
use crate::pay::{query, Payer};
use crate::user::{Lookup, UserAgent};

/// What `find_services` takes.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct FindArgs {
    /// A service name (e.g. `chat`) or words of a description; empty lists every service known.
    #[serde(default)]
    pub query: String,
}

/// What `ask` takes.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct AskArgs {
    /// The service to ask (e.g. `chat`).
    pub service: String,
    /// The brand's NEAR account (e.g. `bob.devnet`); absent: any brand offering the service.
    #[serde(default)]
    pub brand: Option<String>,
    /// The question or instruction.
    pub message: String,
    /// For a chat service: the most tokens to generate (default: the brand's cap).
    #[serde(default)]
    pub max_tokens: Option<u32>,
}

/// The MCP server's state.
#[derive(Clone)]
pub struct AgentWireTools {
    user: Arc<UserAgent>,
    payer: Option<Arc<Payer>>,
    catalog: Arc<Catalog>,
    discover: Vec<String>,
    tool_router: ToolRouter<AgentWireTools>,
}

fn failed(message: impl std::fmt::Display, action: &str) -> CallToolResult {
    CallToolResult::error(vec![ContentBlock::text(format!("{message}\nWhat to do: {action}"))])
}

#[tool_router]
impl AgentWireTools {
    /// Tools over `user`, paying with `payer`; `discover`: service names `find_services` always looks up.
    pub fn new(user: UserAgent, payer: Option<Payer>, discover: Vec<String>) -> AgentWireTools {
        AgentWireTools {
            user: Arc::new(user),
            payer: payer.map(Arc::new),
            catalog: Arc::new(Catalog::new()),
            discover,
            tool_router: Self::tool_router(),
        }
    }

    /// Find services on AgentWire by name or by words of their description, with their prices.
    #[tool(annotations(read_only_hint = true))]
    async fn find_services(&self, Parameters(args): Parameters<FindArgs>) -> CallToolResult {
        let found = self.catalog.search(&self.user, &args.query, &self.discover).await;
        if found.is_empty() {
            return CallToolResult::success(vec![ContentBlock::text(format!(
                "No service found for {:?}. The DHT is searched by service name: try a name such as `chat`.",
                args.query
            ))]);
        }
        let lines: Vec<String> = found
            .iter()
            .map(|l| {
                format!(
                    "- {} ({} service of {}): {} — {}",
                    l.service.name,
                    l.service.interface.name(),
                    l.account,
                    if l.service.description.is_empty() { "no description" } else { &l.service.description },
                    price_text(&l.service)
                )
            })
            .collect();
        let mut result = CallToolResult::success(vec![ContentBlock::text(lines.join("\n"))]);
        result.structured_content = Some(json!({ "services": found.iter().map(|l| l.to_json()).collect::<Vec<_>>() }));
        result
    }

    /// Ask a brand's service and get its answer; paid per query from the configured NEAR account, within the user's spending limits.
    #[tool]
    async fn ask(
        &self,
        Parameters(args): Parameters<AskArgs>,
        meta: RequestMetaObject,
        client: Peer<RoleServer>,
    ) -> CallToolResult {
        let lookup = match &args.brand {
            Some(b) => match AccountId::new(b) {
                Ok(a) => Lookup::Account(a),
                Err(_) => {
                    return failed(
                        format!("{b:?} is not a NEAR account id"),
                        "give the brand's account, e.g. bob.devnet",
                    )
                }
            },
            None => Lookup::Service(args.service.clone()),
        };
        let records = match self.user.find(&lookup).await {
            Ok(r) => r,
            Err(e) => return failed(&e, e.action()),
        };
        self.catalog.add(&records).await;
        let Some(record) = records.iter().find(|r| r.record().service(&args.service).is_some()).cloned() else {
            let offered: Vec<String> = records[0].record().services.iter().map(|s| s.name.clone()).collect();
            return failed(
                format!("the brand does not offer {:?} (it offers: {})", args.service, offered.join(", ")),
                "ask one of the services it offers",
            );
        };
        let Some(service) = record.record().service(&args.service).cloned() else {
            return failed("the brand's record changed", "retry");
        };
        let chat = service.interface == Interface::Chat;
        let body = if chat {
            let mut request = ChatRequest::ask(&args.message);
            request.max_tokens = args.max_tokens;
            request.encode()
        } else {
            args.message.clone().into_bytes()
        };
        let conn = match self.user.session(&record).await {
            Ok(c) => c,
            Err(e) => return failed(&e, e.action()),
        };
        let token = meta.get_progress_token();
        let reader = Arc::new(std::sync::Mutex::new((EventReader::new(), 0usize)));
        let seen = reader.clone();
        let outcome = query(&conn, &record, &args.service, body, self.payer.as_deref(), move |c| {
            // The text as it streams, as progress (chat deltas, or the chunk's text).
            let pieces: Vec<(String, usize)> = match seen.lock() {
                Ok(mut s) => {
                    let texts: Vec<String> = if chat {
                        s.0.feed(c)
                            .unwrap_or_default()
                            .into_iter()
                            .filter_map(|e| match e {
                                ChatEvent::Delta { text } => Some(text),
                                ChatEvent::End { .. } => None,
                            })
                            .collect()
                    } else {
                        vec![String::from_utf8_lossy(c).into_owned()]
                    };
                    texts
                        .into_iter()
                        .map(|t| {
                            s.1 += t.chars().count();
                            (t, s.1)
                        })
                        .collect()
                }
                Err(_) => Vec::new(),
            };
            let (client, token) = (client.clone(), token.clone());
            async move {
                let Some(token) = token else { return };
                for (text, so_far) in pieces {
                    let p = ProgressNotificationParam::new(token.clone(), so_far as f64).with_message(text);
                    let _ = client.notify_progress(p).await;
                }
            }
        })
        .await;
        let outcome = match outcome {
            Ok(o) => o,
            Err(e) => {
                let api = crate::gateway::query_error_text(&e);
                return failed(api.0, &api.1);
            }
        };
        let (text, usage) = if chat {
            match ChatAnswer::decode(&outcome.body) {
                Ok(a) => (a.text, Some(a.usage)),
                Err(e) => return failed(format!("the brand's answer is not a chat answer: {e}"), "use another brand"),
            }
        } else {
            (String::from_utf8_lossy(&outcome.body).into_owned(), None)
        };
        let paid = amount_text(outcome.paid, &service.currency);
        let mut result = CallToolResult::success(vec![
            ContentBlock::text(text.clone()),
            ContentBlock::text(format!(
                "(answered by {} / {}; paid {paid}{})",
                record.record().near_account.as_str(),
                args.service,
                outcome
                    .charged_total()
                    .map(|(c, _)| format!(", receipt verified on channel {}", c.channel_id))
                    .unwrap_or_default()
            )),
        ]);
        result.structured_content = Some(json!({
            "answer": text,
            "brand": record.record().near_account.as_str(),
            "service": args.service,
            "paid": outcome.paid.to_string(),
            "paid_text": paid,
            "usage": usage.map(|u| json!({ "prompt_tokens": u.prompt_tokens, "completion_tokens": u.completion_tokens })),
            "receipt_cumulative": outcome.charged_total().map(|(_, total)| total.to_string()),
        }));
        result
    }

    /// Show the payment channels (deposit, spent, charged) and what was spent today.
    #[tool(annotations(read_only_hint = true))]
    async fn channels(&self) -> CallToolResult {
        let Some(payer) = &self.payer else {
            return CallToolResult::success(vec![ContentBlock::text(
                "No payer is configured: only free services can be asked (start with --near-account and --near-key-file).",
            )]);
        };
        let status = match payer.status().await {
            Ok(s) => s,
            Err(e) => return failed(&e, "check that the NEAR RPC is reachable, then retry"),
        };
        let mut lines: Vec<String> = status
            .iter()
            .map(|c| {
                let cur = agentwire_protocol::money::Currency::parse(&c.currency)
                    .unwrap_or(agentwire_protocol::money::Currency::Near);
                format!(
                    "- channel {} to {}: deposit {}, signed {}, charged {}",
                    c.channel_id,
                    c.payee,
                    amount_text(c.deposit, &cur),
                    amount_text(c.signed, &cur),
                    amount_text(c.charged, &cur)
                )
            })
            .collect();
        if lines.is_empty() {
            lines.push("No open channel.".into());
        }
        for (currency, amount) in payer.spending().spent_today() {
            let cur = agentwire_protocol::money::Currency::parse(&currency)
                .unwrap_or(agentwire_protocol::money::Currency::Near);
            lines.push(format!("Spent today: {}", amount_text(amount, &cur)));
        }
        let mut result = CallToolResult::success(vec![ContentBlock::text(lines.join("\n"))]);
        result.structured_content = Some(json!({ "payer": payer.account(), "channels": status }));
        result
    }
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for AgentWireTools {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new("agentwire", env!("CARGO_PKG_VERSION")))
            .with_instructions(
                "AgentWire: find brands' services on a peer-to-peer network and ask them, paying per query \
                 from a NEAR payment channel within the user's limits. Use find_services first, then ask.",
            )
    }
}

/// Serves the tools on stdin/stdout until the client disconnects.
pub async fn serve_stdio(tools: AgentWireTools) -> Result<(), String> {
    let running = tools.serve(rmcp::transport::stdio()).await.map_err(|e| format!("MCP: {e}"))?;
    running.waiting().await.map_err(|e| format!("MCP: {e}"))?;
    Ok(())
}
