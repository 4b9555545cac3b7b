// near-api-js (pinned in package-lock.json) driving the AgentWire devnet as it
// would drive NEAR: balances and state, a transfer, function calls with
// deposits on the channel contract, an account made through the root's
// registrar (`createAccount("name.devnet")`), a call that fails, a stale nonce the
// library retries, six parallel transactions from one key, `wait_until: NONE`,
// transaction status with receipts, receipts, blocks, chunks and validators.
// Every NEAR balance is checked to the yoctoNEAR from the outcomes'
// `tokens_burnt`.
//
// Run by tests/tests/devnet_near_api_js.rs:
//   node devnet_near_api_js.mjs CONFIG.json
// CONFIG: {"rpc": URL, "root": ID, "channels": ID, "alice": {"id", "key"}, "bob": {"id", "key"}}
// Prints one JSON line {"ok": true, ...} on success; exits 1 with the failure.

import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';

import {
  Account, actions, baseDecode, createTransaction, getTransactionLastResult, JsonRpcProvider, KeyPair, KeyPairSigner,
} from 'near-api-js';
import { ContractExecutionError, InvalidNonceError } from 'near-api-js/rpc-errors';

const config = JSON.parse(readFileSync(process.argv[2], 'utf8'));
const NEAR = 10n ** 24n;
const STORAGE_PER_BYTE = 10n ** 19n;

/** A provider that counts the typed errors it sees on the wire. */
class CountingProvider extends JsonRpcProvider {
  constructor(url) {
    super({ url }, { retries: 1 });
    this.errors = {};
  }

  async sendJsonRpc(method, params) {
    try {
      return await super.sendJsonRpc(method, params);
    } catch (e) {
      const name = e.constructor.name;
      this.errors[name] = (this.errors[name] || 0) + 1;
      throw e;
    }
  }
}

const provider = new CountingProvider(config.rpc);
const account = (who) => new Account(config[who].id, provider, KeyPairSigner.fromSecretKey(config[who].key));
const alice = account('alice');
const bob = account('bob');
const channels = config.channels;
const checks = [];

/** NEAR burnt by a transaction and all its receipts. */
function burnt(outcome) {
  const all = [outcome.transaction_outcome, ...outcome.receipts_outcome];
  return all.reduce((sum, o) => sum + BigInt(o.outcome.tokens_burnt), 0n);
}

async function amount(id) {
  const view = await provider.viewAccount({ accountId: id });
  return view.amount;
}

async function check(name, body) {
  await body();
  checks.push(name);
}

await check('getState and getBalance read the storage cost from EXPERIMENTAL_protocol_config', async () => {
  const protocol = await provider.experimental_protocolConfig({ finality: 'final' });
  assert.equal(BigInt(protocol.runtime_config.storage_amount_per_byte), STORAGE_PER_BYTE);
  const view = await provider.viewAccount({ accountId: alice.accountId });
  const state = await alice.getState();
  assert.equal(state.balance.total, view.amount + view.locked);
  assert.equal(state.balance.usedOnStorage, BigInt(view.storage_usage) * STORAGE_PER_BYTE);
  assert.equal(state.balance.available, state.balance.total - state.balance.usedOnStorage);
  assert.equal(state.storageUsage, view.storage_usage);
  assert.equal(await alice.getBalance(), state.balance.available);
});

let openOutcome;
let channelId;

await check('a transfer moves exactly its amount; the sender also pays tokens_burnt', async () => {
  const [a0, b0] = [await amount(alice.accountId), await amount(bob.accountId)];
  const sent = 1_250n * NEAR / 1_000n;
  const outcome = await alice.transfer({ receiverId: bob.accountId, amount: sent });
  assert.ok('SuccessValue' in outcome.status, JSON.stringify(outcome.status));
  assert.equal(await amount(alice.accountId), a0 - sent - burnt(outcome));
  assert.equal(await amount(bob.accountId), b0 + sent);
});

await check('createAccount("<name>.<root>") goes through the root\'s registrar, as on NEAR', async () => {
  const name = `carol${process.pid}.${config.root}`;
  const key = KeyPair.fromRandom('ed25519');
  const gift = 2n * NEAR;
  const [a0, r0] = [await amount(alice.accountId), await amount(config.root)];
  const created = await alice.createAccount({ newAccountId: name, publicKey: key.getPublicKey(), nearToTransfer: gift });
  assert.equal(getTransactionLastResult(created), true);
  assert.equal(await amount(name), gift);
  assert.equal(await amount(alice.accountId), a0 - gift - burnt(created));
  assert.equal(await amount(config.root), r0, 'the registrar passes the NEAR on and keeps nothing');
  // The new account's key signs.
  const carol = new Account(name, provider, new KeyPairSigner(key));
  const sent = await carol.transfer({ receiverId: alice.accountId, amount: NEAR });
  assert.equal(await amount(name), gift - NEAR - burnt(sent));
  // It exists now: the registrar answers false and sends the NEAR back.
  const a1 = await amount(alice.accountId);
  const again = await alice.createAccount({ newAccountId: name, publicKey: key.getPublicKey(), nearToTransfer: gift });
  assert.equal(getTransactionLastResult(again), false);
  assert.equal(await amount(alice.accountId), a1 - burnt(again));
  assert.equal(await amount(config.root), r0);
});

await check('function calls with deposits on the channel contract: storage_deposit, then open', async () => {
  const [a0, c0] = [await amount(alice.accountId), await amount(channels)];
  const storage = 5n * NEAR / 100n;
  const deposited = await alice.callFunctionRaw({ contractId: channels, methodName: 'storage_deposit', args: {}, deposit: storage });
  assert.ok('SuccessValue' in deposited.status, JSON.stringify(deposited.status));
  assert.equal(await amount(alice.accountId), a0 - storage - burnt(deposited));
  assert.equal(await amount(channels), c0 + storage, 'the contract keeps the whole deposit');

  const payerKey = Buffer.from(KeyPair.fromRandom('ed25519').getPublicKey().data).toString('hex');
  const deposit = NEAR;
  const [a1, c1] = [await amount(alice.accountId), await amount(channels)];
  openOutcome = await alice.callFunctionRaw({
    contractId: channels,
    methodName: 'open',
    args: { payee: bob.accountId, payer_key: payerKey, challenge_period_ns: '3600000000000', deposit: deposit.toString() },
    deposit,
    gas: 100_000_000_000_000n,
  });
  assert.ok('SuccessValue' in openOutcome.status, JSON.stringify(openOutcome.status));
  channelId = JSON.parse(Buffer.from(openOutcome.status.SuccessValue, 'base64').toString());
  assert.equal(await amount(alice.accountId), a1 - deposit - burnt(openOutcome));
  assert.equal(await amount(channels), c1 + deposit);
  const channel = await provider.callFunction({ contractId: channels, method: 'get_channel', args: { channel_id: channelId } });
  assert.equal(channel.payer, alice.accountId);
  assert.equal(channel.payee, bob.accountId);
  assert.equal(BigInt(channel.deposit), deposit);
});

await check('a call that fails throws its typed error and costs only tokens_burnt', async () => {
  const payerKey = Buffer.from(KeyPair.fromRandom('ed25519').getPublicKey().data).toString('hex');
  const args = { payee: alice.accountId, payer_key: payerKey, challenge_period_ns: '3600000000000', deposit: NEAR.toString() };
  const call = { contractId: channels, methodName: 'open', args, deposit: NEAR };
  await assert.rejects(alice.callFunctionRaw(call), (e) => {
    assert.ok(e instanceof ContractExecutionError, `${e.constructor.name}: ${e.message}`);
    assert.match(e.message, /payer and payee must differ/);
    return true;
  });
  const [a0, c0] = [await amount(alice.accountId), await amount(channels)];
  const outcome = await alice.signAndSendTransaction({
    receiverId: channels,
    actions: [actions.functionCall('open', args, 30_000_000_000_000n, NEAR)],
    throwOnFailure: false,
  });
  assert.ok('Failure' in outcome.status, JSON.stringify(outcome.status));
  assert.equal(await amount(alice.accountId), a0 - burnt(outcome), 'the deposit came back');
  assert.equal(await amount(channels), c0);
  await assert.rejects(
    provider.callFunction({ contractId: channels, method: 'no_such_method', args: {} }),
    (e) => e instanceof ContractExecutionError,
  );
});

await check('a stale nonce is refused as InvalidNonce and the library retries', async () => {
  // Refused with NEAR's typed error.
  const key = KeyPair.fromString(config.alice.key);
  const signer = new KeyPairSigner(key);
  const access = await provider.viewAccessKey({ accountId: alice.accountId, publicKey: key.getPublicKey() });
  const block = await provider.viewBlock({ finality: 'final' });
  const stale = createTransaction(alice.accountId, key.getPublicKey(), bob.accountId, access.nonce,
    [actions.transfer(1n)], baseDecode(block.header.hash));
  const { signedTransaction } = await signer.signTransaction(stale);
  const before = await amount(alice.accountId);
  await assert.rejects(provider.sendTransaction(signedTransaction), (e) => {
    assert.ok(e instanceof InvalidNonceError, `${e.constructor.name}: ${e.message}`);
    assert.equal(BigInt(e.accessKeyNonce), access.nonce);
    assert.equal(BigInt(e.transactionNonce), access.nonce);
    return true;
  });
  assert.equal(await amount(alice.accountId), before, 'a refused transaction changes nothing');

  // Two clients sharing one key: the first one's cached nonce goes stale.
  const [first, second] = [account('alice'), account('alice')];
  const seen = provider.errors.InvalidNonceError || 0;
  const [a0, b0] = [await amount(alice.accountId), await amount(bob.accountId)];
  const outcomes = [];
  outcomes.push(await first.transfer({ receiverId: bob.accountId, amount: 1n }));
  outcomes.push(await second.transfer({ receiverId: bob.accountId, amount: 2n }));
  outcomes.push(await first.transfer({ receiverId: bob.accountId, amount: 3n }));
  assert.equal((provider.errors.InvalidNonceError || 0) - seen, 1, 'the stale nonce was refused once, then retried');
  for (const o of outcomes) assert.ok('SuccessValue' in o.status);
  const fees = outcomes.reduce((sum, o) => sum + burnt(o), 0n);
  assert.equal(await amount(alice.accountId), a0 - 6n - fees);
  assert.equal(await amount(bob.accountId), b0 + 6n);
});

let retriesInParallel;

await check('six parallel transactions from one key all succeed', async () => {
  const sender = account('alice');
  const [a0, b0] = [await amount(alice.accountId), await amount(bob.accountId)];
  const seen = provider.errors.InvalidNonceError || 0;
  const amounts = [1n, 2n, 3n, 4n, 5n, 6n].map((n) => n * NEAR / 100n);
  const outcomes = await Promise.all(amounts.map((a) => sender.transfer({ receiverId: bob.accountId, amount: a })));
  retriesInParallel = (provider.errors.InvalidNonceError || 0) - seen;
  for (const o of outcomes) assert.ok('SuccessValue' in o.status, JSON.stringify(o.status));
  assert.equal(new Set(outcomes.map((o) => o.transaction.nonce)).size, 6, 'six distinct nonces');
  const total = amounts.reduce((s, a) => s + a, 0n);
  const fees = outcomes.reduce((sum, o) => sum + burnt(o), 0n);
  assert.equal(await amount(alice.accountId), a0 - total - fees);
  assert.equal(await amount(bob.accountId), b0 + total);
});

await check('send_tx with wait_until NONE answers at once; tx shows the outcome later', async () => {
  // A fresh client: `alice`'s cached nonce is behind the other clients' transactions.
  const fresh = account('alice');
  const signer = fresh.getSigner();
  const tx = await fresh.createTransaction({
    receiverId: bob.accountId,
    actions: [actions.transfer(7n)],
    publicKey: await signer.getPublicKey(),
  });
  const { txHash, signedTransaction } = await signer.signTransaction(tx);
  const [a0, b0] = [await amount(alice.accountId), await amount(bob.accountId)];
  const answer = await provider.sendTransactionUntil(signedTransaction, 'NONE');
  assert.deepEqual(answer, { final_execution_status: 'NONE' });
  const status = await provider.viewTransactionStatus({ txHash, accountId: alice.accountId, waitUntil: 'FINAL' });
  assert.equal(status.final_execution_status, 'FINAL');
  assert.ok('SuccessValue' in status.status);
  assert.equal(await amount(alice.accountId), a0 - 7n - burnt(status));
  assert.equal(await amount(bob.accountId), b0 + 7n);
});

await check('EXPERIMENTAL_tx_status lists the receipts; EXPERIMENTAL_receipt finds each', async () => {
  const hash = openOutcome.transaction_outcome.id;
  const status = await provider.viewTransactionStatusWithReceipts({ txHash: hash, accountId: alice.accountId });
  assert.equal(status.receipts.length, status.receipts_outcome.length, 'no local receipt: signer is not receiver');
  const first = status.receipts[0];
  assert.equal(first.receipt_id, status.transaction_outcome.outcome.receipt_ids[0]);
  assert.equal(first.predecessor_id, alice.accountId);
  assert.equal(first.receiver_id, channels);
  const call = first.receipt.Action.actions[0].FunctionCall;
  assert.equal(call.method_name, 'open');
  assert.equal(BigInt(call.deposit), NEAR);
  for (const receipt of status.receipts) {
    assert.deepEqual(await provider.viewTransactionReceipt(receipt.receipt_id), receipt);
  }
});

await check('blocks, chunks and validators have NEAR shapes', async () => {
  const block = await provider.viewBlock({ blockId: openOutcome.transaction_outcome.block_hash });
  assert.equal(block.chunks.length, 1);
  const chunk = await provider.viewChunk(block.chunks[0].chunk_hash);
  assert.equal(chunk.header.chunk_hash, block.chunks[0].chunk_hash);
  assert.deepEqual(chunk.transactions.map((t) => t.hash), [openOutcome.transaction_outcome.id]);
  assert.equal(BigInt(chunk.header.balance_burnt), burnt(openOutcome));
  const validators = await provider.viewValidators();
  assert.equal(validators.current_validators.length, 1);
  const status = await provider.viewNodeStatus();
  assert.equal(validators.current_validators[0].account_id, status.validators[0].account_id);
});

console.log(JSON.stringify({
  ok: true,
  checks,
  retries_in_parallel: retriesInParallel,
  errors_seen: provider.errors,
  alice: (await amount(alice.accountId)).toString(),
  bob: (await amount(bob.accountId)).toString(),
  channel_id: channelId,
}));
