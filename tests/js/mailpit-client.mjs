// Drives smtptut's inbox with an existing Mailpit client, the npm
// mailpit-api package, unchanged.  Run by tests/test_inbox_mailpit_client.py:
//   node mailpit-client.mjs http://127.0.0.1:PORT
// It prints READY when the test should send the second message, and
// ALL OK (then a JSON summary) when every step held; any failure exits 1.
import assert from "node:assert/strict";
import { MailpitClient } from "mailpit-api";

const mailpit = new MailpitClient(process.argv[2]);
const seen = {};

const info = await mailpit.getInfo();
assert.equal(info.Messages, 1);

const list = await mailpit.listMessages();
assert.equal(list.total, 1);
assert.equal(list.messages[0].Subject, "first from python");
assert.equal(list.messages[0].Read, false);
const id = list.messages[0].ID;

const summary = await mailpit.getMessageSummary(id);
assert.equal(summary.Subject, "first from python");
assert.equal(summary.From.Address, "alice@example.com");
assert.equal(summary.Attachments.length, 1);
assert.equal((await mailpit.listMessages()).messages[0].Read, true);

const latest = await mailpit.getMessageSummary();
assert.equal(latest.ID, id);

const headers = await mailpit.getMessageHeaders(id);
assert.deepEqual(headers.Subject, ["first from python"]);

const raw = await mailpit.getMessageSource(id);
assert.match(raw, /^Return-Path: <alice@example\.com>\n/);
assert.match(raw, /Subject: first from python/);

const part = await mailpit.getMessageAttachment(id, summary.Attachments[0].PartID);
assert.equal(part.size, 3000);
seen.attachmentType = part.type;

const found = await mailpit.searchMessages({ query: 'subject:"first from"' });
assert.equal(found.messages_count, 1);
const none = await mailpit.searchMessages({ query: "-subject:first" });
assert.equal(none.messages_count, 0);

assert.equal(await mailpit.renderMessageText(id), "plain words\n");

console.log("READY");
const second = await mailpit.waitForMessage(
  { query: "subject:second" },
  { timeout: 10000, interval: 100 },
);
assert.equal(second.Subject, "second from python");

assert.equal(await mailpit.releaseMessage(id, { To: ["dev@example.test"] }), "ok");
await assert.rejects(
  mailpit.releaseMessage(id, { To: ["victim@example.org"] }),
  /400.*not allowed by SMTPTUT_RELEASE_TO/,
);
await assert.rejects(mailpit.htmlCheck(id), /400/);
await assert.rejects(mailpit.spamAssassinCheck(id), /400/);

assert.equal(await mailpit.setReadStatus({ IDs: [id], Read: false }), "ok");
// waitForMessage opened (and so marked read) the second message.
assert.equal((await mailpit.getInfo()).Unread, 1);

assert.equal(await mailpit.deleteMessagesBySearch({ query: "subject:second" }), "ok");
assert.equal((await mailpit.listMessages()).total, 1);
assert.equal(await mailpit.deleteMessages({ IDs: [id] }), "ok");
assert.equal((await mailpit.listMessages()).total, 0);
await assert.rejects(mailpit.getMessageSummary(id), /404/);

console.log("ALL OK");
console.log(JSON.stringify(seen));
