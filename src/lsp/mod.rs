//! The language server (`strata lsp`): diagnostics as you type, hover, completion, go to
//! definition (block calls and block parameters), shape inlay hints and quick fixes, over
//! JSON-RPC on stdio.
//!
//! [`Server::handle`] turns one incoming message into the messages to send back; [`run`] is
//! the loop that reads framed messages, calls it and writes the answers. Every document is
//! checked in full on open, change and save (the checker takes well under a millisecond for a
//! seed spec), and everything else reads that result.

mod actions;
mod completion;
pub mod convert;
mod definition;
mod document;
mod hover;
mod inlay;
mod locate;
mod publish;
mod scan;
pub mod transport;

pub use document::Document;
pub use publish::{anchor, docs_link, DIAGNOSTICS_DOCS_URL};

use convert::Positions;
use lsp_server::{ErrorCode, Message, Notification, Request, Response};
use lsp_types::notification::{
    DidChangeTextDocument, DidCloseTextDocument, DidOpenTextDocument, DidSaveTextDocument,
    LogMessage, Notification as _, PublishDiagnostics,
};
use lsp_types::request::{
    CodeActionRequest, Completion, GotoDefinition, HoverRequest, InlayHintRequest, Request as _,
};
use lsp_types::{
    CodeActionProviderCapability, CompletionOptions, CompletionResponse, HoverProviderCapability,
    InitializeResult, LogMessageParams, MessageType, OneOf, PublishDiagnosticsParams, SaveOptions,
    ServerCapabilities, ServerInfo, TextDocumentSyncCapability, TextDocumentSyncKind,
    TextDocumentSyncOptions, TextDocumentSyncSaveOptions, Uri,
};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::collections::HashMap;
use std::io::{self, BufRead, Write};
use std::panic::{catch_unwind, AssertUnwindSafe};
use transport::{read_message, write_message, Incoming};

/// The server state: the open documents, each checked.
#[derive(Debug, Default)]
pub struct Server {
    documents: HashMap<Uri, Document>,
    shutdown_requested: bool,
}

/// How a session ended: `exit` after `shutdown` is a clean end (exit status 0).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ending {
    /// `exit` after `shutdown`.
    Clean,
    /// `exit` without `shutdown`, or the input ended.
    Abrupt,
}

/// Serves one session: reads messages from `input`, writes answers to `output`, until `exit`
/// or the end of the input. What the reader skips (bytes that are not UTF-8, over-long lines,
/// bodies that are not messages) is logged on stderr and to the client (`window/logMessage`);
/// only an I/O error on the streams themselves ends the session early.
pub fn run(input: &mut impl BufRead, output: &mut impl Write) -> io::Result<Ending> {
    let mut server = Server::new();
    loop {
        let mut notes = Vec::new();
        let incoming = read_message(input, &mut |note| notes.push(note))?;
        for note in notes {
            eprintln!("strata lsp: {note}");
            write_message(output, log_message(&note))?;
        }
        let message = match incoming {
            Incoming::Message(message) => message,
            Incoming::Invalid(answer) => {
                write_message(output, answer.into())?;
                continue;
            }
            Incoming::End => return Ok(Ending::Abrupt),
        };
        if matches!(&message, Message::Notification(note) if note.method == "exit") {
            return Ok(if server.shutdown_requested {
                Ending::Clean
            } else {
                Ending::Abrupt
            });
        }
        for answer in server.handle_guarded(message) {
            write_message(output, answer)?;
        }
    }
}

/// A `window/logMessage` notification with a warning.
fn log_message(text: &str) -> Message {
    let params = LogMessageParams {
        typ: MessageType::WARNING,
        message: format!("strata lsp: {text}"),
    };
    Notification::new(LogMessage::METHOD.to_string(), params).into()
}

impl Server {
    /// A server with no open documents.
    pub fn new() -> Server {
        Server::default()
    }

    /// The open document at `uri`.
    pub fn document(&self, uri: &Uri) -> Option<&Document> {
        self.documents.get(uri)
    }

    /// Handles one message; returns the messages to send (a response to a request, diagnostics
    /// after a change).
    pub fn handle(&mut self, message: Message) -> Vec<Message> {
        match message {
            Message::Request(request) => vec![Message::Response(self.respond(request))],
            Message::Notification(notification) => self.notify(notification),
            Message::Response(_) => Vec::new(),
        }
    }

    /// [`Server::handle`], answering a request with an internal error instead of unwinding if
    /// a handler panics (a bug; the checker itself does not panic).
    pub fn handle_guarded(&mut self, message: Message) -> Vec<Message> {
        let id = match &message {
            Message::Request(request) => Some(request.id.clone()),
            _ => None,
        };
        match catch_unwind(AssertUnwindSafe(|| self.handle(message))) {
            Ok(answers) => answers,
            Err(_) => id
                .map(|id| {
                    Response::new_err(
                        id,
                        ErrorCode::InternalError as i32,
                        "internal error while handling the request".to_string(),
                    )
                    .into()
                })
                .into_iter()
                .collect(),
        }
    }

    fn respond(&mut self, request: Request) -> Response {
        let id = request.id.clone();
        if self.shutdown_requested {
            return Response::new_err(
                id,
                ErrorCode::InvalidRequest as i32,
                format!(
                    "`{}` after `shutdown`: only `exit` is accepted now",
                    request.method
                ),
            );
        }
        let result = match request.method.as_str() {
            "initialize" => to_json(initialize_result()),
            "shutdown" => {
                self.shutdown_requested = true;
                Ok(serde_json::Value::Null)
            }
            HoverRequest::METHOD => self.answer::<HoverRequest>(request, |doc, params| {
                let position = params.text_document_position_params.position;
                hover::hover(doc, doc.index.offset(&doc.text, position))
            }),
            Completion::METHOD => self.answer::<Completion>(request, |doc, params| {
                let position = params.text_document_position.position;
                let offset = doc.index.offset(&doc.text, position);
                Some(CompletionResponse::Array(completion::completion(
                    doc, offset,
                )))
            }),
            GotoDefinition::METHOD => self.answer::<GotoDefinition>(request, |doc, params| {
                let position = params.text_document_position_params;
                let offset = doc.index.offset(&doc.text, position.position);
                definition::definition(&position.text_document.uri, doc, offset)
            }),
            InlayHintRequest::METHOD => self.answer::<InlayHintRequest>(request, |doc, params| {
                Some(inlay::inlay_hints(doc, params.range))
            }),
            CodeActionRequest::METHOD => {
                self.answer::<CodeActionRequest>(request, |doc, params| {
                    Some(actions::code_actions(
                        &params.text_document.uri,
                        doc,
                        params.range,
                    ))
                })
            }
            method => Err((
                ErrorCode::MethodNotFound,
                format!("unknown request `{method}`"),
            )),
        };
        match result {
            Ok(value) => Response::new_ok(id, value),
            Err((code, message)) => Response::new_err(id, code as i32, message),
        }
    }

    /// Parses the parameters of a document request and answers it from the document; a
    /// document that is not open gets an empty answer.
    fn answer<R>(
        &self,
        request: Request,
        answer: impl FnOnce(&Document, R::Params) -> R::Result,
    ) -> Result<serde_json::Value, (ErrorCode, String)>
    where
        R: lsp_types::request::Request,
        R::Params: DeserializeOwned + DocumentParams,
        R::Result: Serialize + Default,
    {
        let params: R::Params = parse_params(request.params)?;
        let result = match self.documents.get(params.uri()) {
            Some(document) => answer(document, params),
            None => R::Result::default(),
        };
        to_json(result)
    }

    fn notify(&mut self, notification: Notification) -> Vec<Message> {
        if self.shutdown_requested {
            return Vec::new();
        }
        let uri = match notification.method.as_str() {
            DidOpenTextDocument::METHOD => self.did_open(notification.params),
            DidChangeTextDocument::METHOD => self.did_change(notification.params),
            DidSaveTextDocument::METHOD => self.did_save(notification.params),
            DidCloseTextDocument::METHOD => {
                return self.did_close(notification.params).into_iter().collect()
            }
            _ => None,
        };
        uri.and_then(|uri| self.publish(&uri)).into_iter().collect()
    }

    fn did_open(&mut self, params: serde_json::Value) -> Option<Uri> {
        let params: lsp_types::DidOpenTextDocumentParams = parse_params(params).ok()?;
        let item = params.text_document;
        let document = Document::new(&item.uri, item.text, item.version);
        self.documents.insert(item.uri.clone(), document);
        Some(item.uri)
    }

    fn did_change(&mut self, params: serde_json::Value) -> Option<Uri> {
        let params: lsp_types::DidChangeTextDocumentParams = parse_params(params).ok()?;
        let uri = params.text_document.uri;
        let mut text = self.documents.get(&uri).map(|doc| doc.text.clone());
        for change in params.content_changes {
            text = Some(match (change.range, text) {
                (Some(range), Some(old)) => apply_range_change(&old, range, &change.text),
                _ => change.text,
            });
        }
        let document = Document::new(&uri, text?, params.text_document.version);
        self.documents.insert(uri.clone(), document);
        Some(uri)
    }

    fn did_save(&mut self, params: serde_json::Value) -> Option<Uri> {
        let params: lsp_types::DidSaveTextDocumentParams = parse_params(params).ok()?;
        let uri = params.text_document.uri;
        if let Some(text) = params.text {
            let version = self.documents.get(&uri).map_or(0, |doc| doc.version);
            self.documents
                .insert(uri.clone(), Document::new(&uri, text, version));
        }
        self.documents.contains_key(&uri).then_some(uri)
    }

    fn did_close(&mut self, params: serde_json::Value) -> Option<Message> {
        let params: lsp_types::DidCloseTextDocumentParams = parse_params(params).ok()?;
        let uri = params.text_document.uri;
        self.documents.remove(&uri);
        let params = PublishDiagnosticsParams::new(uri, Vec::new(), None);
        Some(Notification::new(PublishDiagnostics::METHOD.to_string(), params).into())
    }

    fn publish(&self, uri: &Uri) -> Option<Message> {
        let document = self.documents.get(uri)?;
        let params = publish::publish_params(uri, document);
        Some(Notification::new(PublishDiagnostics::METHOD.to_string(), params).into())
    }
}

/// Request parameters that name a document.
pub trait DocumentParams {
    /// The document's URI.
    fn uri(&self) -> &Uri;
}

impl DocumentParams for lsp_types::HoverParams {
    fn uri(&self) -> &Uri {
        &self.text_document_position_params.text_document.uri
    }
}

impl DocumentParams for lsp_types::CompletionParams {
    fn uri(&self) -> &Uri {
        &self.text_document_position.text_document.uri
    }
}

impl DocumentParams for lsp_types::GotoDefinitionParams {
    fn uri(&self) -> &Uri {
        &self.text_document_position_params.text_document.uri
    }
}

impl DocumentParams for lsp_types::InlayHintParams {
    fn uri(&self) -> &Uri {
        &self.text_document.uri
    }
}

impl DocumentParams for lsp_types::CodeActionParams {
    fn uri(&self) -> &Uri {
        &self.text_document.uri
    }
}

/// What the server can do, answered to `initialize`.
pub fn initialize_result() -> InitializeResult {
    let capabilities = ServerCapabilities {
        text_document_sync: Some(TextDocumentSyncCapability::Options(
            TextDocumentSyncOptions {
                open_close: Some(true),
                change: Some(TextDocumentSyncKind::FULL),
                save: Some(TextDocumentSyncSaveOptions::SaveOptions(SaveOptions {
                    include_text: Some(true),
                })),
                ..TextDocumentSyncOptions::default()
            },
        )),
        hover_provider: Some(HoverProviderCapability::Simple(true)),
        completion_provider: Some(CompletionOptions {
            trigger_characters: Some(["(", ",", "=", " ", ">"].map(str::to_string).to_vec()),
            ..CompletionOptions::default()
        }),
        definition_provider: Some(OneOf::Left(true)),
        inlay_hint_provider: Some(OneOf::Left(true)),
        code_action_provider: Some(CodeActionProviderCapability::Simple(true)),
        ..ServerCapabilities::default()
    };
    InitializeResult {
        capabilities,
        server_info: Some(ServerInfo {
            name: "strata".to_string(),
            version: Some(env!("CARGO_PKG_VERSION").to_string()),
        }),
    }
}

fn parse_params<P: DeserializeOwned>(params: serde_json::Value) -> Result<P, (ErrorCode, String)> {
    serde_json::from_value(params).map_err(|err| {
        (
            ErrorCode::InvalidParams,
            format!("invalid parameters: {err}"),
        )
    })
}

fn to_json(value: impl Serialize) -> Result<serde_json::Value, (ErrorCode, String)> {
    serde_json::to_value(value).map_err(|err| (ErrorCode::InternalError, err.to_string()))
}

/// Applies an incremental change (for clients that send ranges despite full sync).
fn apply_range_change(old: &str, range: lsp_types::Range, new_text: &str) -> String {
    let index = convert::LineIndex::new(old);
    let start = index.offset(old, range.start);
    let end = index.offset(old, range.end).max(start);
    format!("{}{new_text}{}", &old[..start], &old[end..])
}
