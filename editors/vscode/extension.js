// The strata extension: starts `strata lsp` for the YAML files that are strata specs.
'use strict';

const vscode = require('vscode');
const { LanguageClient } = require('vscode-languageclient/node');

let client;

function activate(context) {
  const config = vscode.workspace.getConfiguration('strata');
  const command = config.get('path', 'strata');
  const patterns = config.get('documentSelector', [
    '**/*.strata.yaml',
    '**/*.strata.yml',
    '**/specs/**/*.yaml',
    '**/specs/**/*.yml',
  ]);
  const serverOptions = {
    run: { command, args: ['lsp'] },
    debug: { command, args: ['lsp'] },
  };
  const clientOptions = {
    documentSelector: patterns.map((pattern) => ({ scheme: 'file', language: 'yaml', pattern })),
  };
  client = new LanguageClient('strata', 'strata', serverOptions, clientOptions);
  client.start();
  context.subscriptions.push({ dispose: () => client && client.stop() });
}

function deactivate() {
  return client ? client.stop() : undefined;
}

module.exports = { activate, deactivate };
