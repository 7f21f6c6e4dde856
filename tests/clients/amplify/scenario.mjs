// aws-amplify v6, unmodified, configured from the amplify_outputs.json graphql-files wrote, as an
// app would use it. Prints one JSON object of what each step saw; the Python test judges it.
//
// OUTPUTS: the amplify_outputs.json; USER_TOKEN: a user's JWT (for authMode "lambda");
// node trusts the test's certificate through NODE_EXTRA_CA_CERTS.
import { readFileSync } from "node:fs";
import WebSocket from "ws";
import { Amplify } from "aws-amplify";
import { generateClient } from "aws-amplify/api";

globalThis.WebSocket = WebSocket; // Node 20 has no global WebSocket

const outputs = JSON.parse(readFileSync(process.env.OUTPUTS, "utf8"));
Amplify.configure(outputs);
const client = generateClient();
const seen = {};
const fail = (step) => (error) => {
  seen[step] = { error: JSON.stringify(error?.errors ?? error?.message ?? error) };
};

function within(ms, what) {
  return new Promise((_, reject) => setTimeout(() => reject(new Error(`${what}: timed out`)), ms));
}

// The first event a subscription delivers, after `act` ran once the subscription was ready.
async function firstEvent(observable, act, ms = 15000) {
  let sub;
  const event = new Promise((resolve, reject) => {
    sub = observable.subscribe({ next: resolve, error: reject });
  });
  event.catch(() => {}); // a refusal may come before anyone awaits it; it is judged below
  await new Promise((resolve) => setTimeout(resolve, 1500)); // start_ack, then act
  await act();
  try {
    return await Promise.race([event, within(ms, "event")]);
  } finally {
    sub.unsubscribe();
  }
}

try {
  // --- the model client: CRUD and paging -------------------------------------------------------
  const created = await client.models.Song.create({ name: "Blue in Green" });
  seen.create = { data: created.data, errors: created.errors ?? null };
  const id = created.data.id;

  const got = await client.models.Song.get({ id });
  seen.get = { data: got.data, errors: got.errors ?? null };

  const missing = await client.models.Song.get({ id: "no-such-song" });
  seen.getMissing = { data: missing.data, errors: missing.errors ?? null };

  const updated = await client.models.Song.update({ id, name: "So What" });
  seen.update = { data: updated.data, errors: updated.errors ?? null };

  for (const n of [1, 2, 3, 4]) {
    await client.models.Song.create({ name: `Track ${n}` });
  }
  const pages = [];
  let nextToken = null;
  do {
    const page = await client.models.Song.list({ limit: 2, nextToken });
    pages.push(page.data.map((song) => song.name));
    nextToken = page.nextToken;
  } while (nextToken);
  seen.pages = pages;

  const filtered = await client.models.Song.list({ filter: { name: { beginsWith: "Track" } } });
  seen.filtered = filtered.data.map((song) => song.name).sort();

  // --- subscriptions through /graphql/realtime --------------------------------------------------
  seen.onCreate = await firstEvent(client.models.Song.onCreate(), () =>
    client.models.Song.create({ name: "Live" }),
  ).catch(fail("onCreate"));

  const snapshots = [];
  seen.observeQuery = await new Promise((resolve, reject) => {
    const sub = client.models.Song.observeQuery().subscribe({
      next: ({ items, isSynced }) => {
        snapshots.push({ count: items.length, isSynced });
        if (isSynced && snapshots.length === 1) {
          setTimeout(() => client.models.Song.create({ name: "Observed" }), 1500);
        }
        if (items.some((song) => song.name === "Observed")) {
          sub.unsubscribe();
          resolve({ snapshots, names: items.map((song) => song.name) });
        }
      },
      error: reject,
    });
    setTimeout(() => reject(new Error("observeQuery: timed out")), 20000);
  }).catch(fail("observeQuery"));

  // --- a signed-in user (authMode "lambda": the JWT in Authorization, as AppSync takes it) ------
  const asUser = await client.graphql({
    query: `mutation { createSong(input: {name: "by a user"}) { id owner } }`,
    authMode: "lambda",
    authToken: process.env.USER_TOKEN,
  }).catch((error) => ({ errors: error.errors }));
  seen.asUser = { errors: (asUser.errors ?? []).map((e) => e.message) };

  // a subscription the rules refuse: Song records are the API key's, not a user's
  seen.refused = await firstEvent(
    client.graphql({
      query: `subscription { onCreateSong { id } }`,
      authMode: "lambda",
      authToken: process.env.USER_TOKEN,
    }),
    () => client.models.Song.create({ name: "Unseen" }),
    5000,
  )
    .then((event) => ({ event }))
    .catch((error) => ({ errors: JSON.stringify(error?.errors ?? error?.message ?? error) }));

  const deleted = await client.models.Song.delete({ id });
  seen.delete = { data: deleted.data, errors: deleted.errors ?? null };
} catch (error) {
  seen.crashed = String(error?.stack ?? JSON.stringify(error));
}
console.log(JSON.stringify(seen));
process.exit(0);
