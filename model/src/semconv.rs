//! The X-Ray semantic conventions: every attribute name X-Ray reads from or
//! writes to OTLP spans (ARCHITECTURE §4).
//!
//! These names are the wire contract between the SDKs, any OpenTelemetry
//! instrumentation and the collector. Changing one is a breaking change.

// ---- execution -----------------------------------------------------------

/// Pipeline name. Required on an execution span: its presence marks the span
/// as an execution.
pub const PIPELINE: &str = "xray.pipeline";
/// Execution id. Defaults to the trace id in lowercase hex.
pub const EXECUTION_ID: &str = "xray.execution.id";
/// Deployment environment of the execution, e.g. `prod`.
pub const ENVIRONMENT: &str = "xray.environment";
/// Execution status: `completed`, `failed` or `running`. Defaults from the
/// span status (ERROR → failed).
pub const EXECUTION_STATUS: &str = "xray.execution.status";
/// Execution input, JSON text.
pub const EXECUTION_INPUT: &str = "xray.execution.input";
/// Execution output, JSON text.
pub const EXECUTION_OUTPUT: &str = "xray.execution.output";
/// Error message of a failed execution.
pub const EXECUTION_ERROR: &str = "xray.execution.error";
/// Tags of the execution, a string array.
pub const TAGS: &str = "xray.tags";
/// Prefix of execution metadata entries: `xray.metadata.<key>`; scalar values,
/// stored as strings.
pub const METADATA_PREFIX: &str = "xray.metadata.";

// ---- step ----------------------------------------------------------------

/// Step name. Defaults to the event or span name.
pub const STEP_NAME: &str = "xray.step.name";
/// Step type: `llm`, `retrieval`, `filter`, `rank`, `select`, `tool`, `logic`
/// or `custom`.
pub const STEP_TYPE: &str = "xray.step.type";
/// Step status: `completed`, `failed` or `skipped`. Defaults from the span
/// status.
pub const STEP_STATUS: &str = "xray.step.status";
/// Step input, JSON text.
pub const STEP_INPUT: &str = "xray.step.input";
/// Step output, JSON text.
pub const STEP_OUTPUT: &str = "xray.step.output";
/// Why the step decided what it did, free text.
pub const STEP_REASONING: &str = "xray.step.reasoning";
/// Prefix of step metadata entries: `xray.step.metadata.<key>`.
pub const STEP_METADATA_PREFIX: &str = "xray.step.metadata.";
/// Number of candidates entering the step (integer ≥ 0).
pub const STEP_CANDIDATES_IN: &str = "xray.step.candidates.in";
/// Number of candidates leaving the step (integer ≥ 0).
pub const STEP_CANDIDATES_OUT: &str = "xray.step.candidates.out";
/// Rejection histogram, JSON object: reason → count.
pub const STEP_REJECTIONS: &str = "xray.step.rejections";
/// Sampled candidate decisions, JSON array of
/// `{"id", "decision": "accepted"|"rejected"|"selected", "reason", "score"}`.
pub const STEP_CANDIDATES: &str = "xray.step.candidates";
/// Cost of the step, a number (e.g. USD).
pub const STEP_COST: &str = "xray.step.cost";
/// Confidence of the step's decision, a number.
pub const STEP_CONFIDENCE: &str = "xray.step.confidence";
/// Error message of a failed step.
pub const STEP_ERROR: &str = "xray.step.error";
/// Start of a step recorded as a span event (snapshot mode), in unix
/// nanoseconds; the event time is the step's end.
pub const STEP_START_TIME_UNIX_NANO: &str = "xray.step.start_time_unix_nano";

/// Metadata key under which the mapper records values it had to ignore or
/// repair (wrong types, negative counts), as a JSON array of messages.
pub const MAPPING_WARNINGS: &str = "xray.mapping.warnings";

// ---- resource ------------------------------------------------------------

/// Resource attribute naming the emitting service.
pub const SERVICE_NAME: &str = "service.name";
/// Resource attribute with the deployment environment (current name).
pub const DEPLOYMENT_ENVIRONMENT_NAME: &str = "deployment.environment.name";
/// Resource attribute with the deployment environment (deprecated name).
pub const DEPLOYMENT_ENVIRONMENT: &str = "deployment.environment";

// ---- GenAI semantic conventions -----------------------------------------

/// GenAI operation: `chat`, `text_completion`, `generate_content`,
/// `embeddings` (→ llm), `execute_tool` (→ tool), `invoke_agent` (→ logic).
pub const GEN_AI_OPERATION_NAME: &str = "gen_ai.operation.name";
/// Model requested.
pub const GEN_AI_REQUEST_MODEL: &str = "gen_ai.request.model";
/// Model that answered (preferred over the requested one).
pub const GEN_AI_RESPONSE_MODEL: &str = "gen_ai.response.model";
/// Provider, e.g. `openai`.
pub const GEN_AI_PROVIDER_NAME: &str = "gen_ai.provider.name";
/// Provider, deprecated name of [`GEN_AI_PROVIDER_NAME`].
pub const GEN_AI_SYSTEM: &str = "gen_ai.system";
/// Input tokens used.
pub const GEN_AI_USAGE_INPUT_TOKENS: &str = "gen_ai.usage.input_tokens";
/// Output tokens used.
pub const GEN_AI_USAGE_OUTPUT_TOKENS: &str = "gen_ai.usage.output_tokens";
/// Input tokens, deprecated name.
pub const GEN_AI_USAGE_PROMPT_TOKENS: &str = "gen_ai.usage.prompt_tokens";
/// Output tokens, deprecated name.
pub const GEN_AI_USAGE_COMPLETION_TOKENS: &str = "gen_ai.usage.completion_tokens";
/// Input messages, JSON.
pub const GEN_AI_INPUT_MESSAGES: &str = "gen_ai.input.messages";
/// Output messages, JSON.
pub const GEN_AI_OUTPUT_MESSAGES: &str = "gen_ai.output.messages";

// ---- OpenInference -------------------------------------------------------

/// OpenInference span kind: `LLM`, `RETRIEVER`, `RERANKER`, `TOOL`,
/// `GUARDRAIL`, `CHAIN`, `AGENT`, `EMBEDDING`, …
pub const OPENINFERENCE_SPAN_KIND: &str = "openinference.span.kind";
/// OpenInference input value.
pub const INPUT_VALUE: &str = "input.value";
/// OpenInference output value.
pub const OUTPUT_VALUE: &str = "output.value";
/// OpenInference model name.
pub const LLM_MODEL_NAME: &str = "llm.model_name";
/// OpenInference prompt token count.
pub const LLM_TOKEN_COUNT_PROMPT: &str = "llm.token_count.prompt";
/// OpenInference completion token count.
pub const LLM_TOKEN_COUNT_COMPLETION: &str = "llm.token_count.completion";
/// OpenInference provider.
pub const LLM_PROVIDER: &str = "llm.provider";
