// aws-amplify v6, unmodified, against the README's blog (a Post with an image and comments that
// cascade, a Comment with an attachment, a User with a Profile): the relation fields of
// model_introspection as the client reads them. Prints one JSON object of what each step saw.
//
// OUTPUTS: the amplify_outputs.json; node trusts the test's certificate through
// NODE_EXTRA_CA_CERTS; USER_TOKEN: a user's JWT for the uploads. Files are sent as any app sends them to graphql-files: a GraphQL
// multipart request (Amplify's model client has no file upload of its own).
import { readFileSync } from "node:fs";
import { Amplify } from "aws-amplify";
import { generateClient } from "aws-amplify/api";

const outputs = JSON.parse(readFileSync(process.env.OUTPUTS, "utf8"));
Amplify.configure(outputs);
const client = generateClient();
const seen = {};
const result = (r) => ({ data: r.data, errors: r.errors ?? null });

// One file into a record through the multipart request spec, as an app's upload would.
async function attach(mutation, input, name, type, bytes) {
  const form = new FormData();
  const query = `mutation($i: ${mutation[0].toUpperCase()}${mutation.slice(1)}Input!) {
    ${mutation}(input: $i) { id } }`;
  form.append("operations", JSON.stringify({ query, variables: { i: { ...input, file: null } } }));
  form.append("map", JSON.stringify({ 0: ["variables.i.file"] }));
  form.append("0", new Blob([bytes], { type }), name);
  const response = await fetch(outputs.data.url, {
    method: "POST",
    headers: {
      "x-api-key": outputs.data.api_key,
      authorization: process.env.USER_TOKEN, // storage rules: a signed-in user writes files
      "apollo-require-preflight": "true",
    },
    body: form,
  });
  return response.json();
}

try {
  const post = await client.models.Post.create({ title: "First" });
  seen.post = result(post);
  const postId = post.data.id;
  const png = Buffer.from(process.env.PNG_BASE64, "base64");
  seen.image = await attach("attachPostImage", { postId }, "cover.png", "image/png", png);

  const first = await client.models.Comment.create({ postId, content: "one" });
  seen.comment = result(first);
  seen.attachment = await attach(
    "attachCommentAttachment", { commentId: first.data.id }, "sketch.png", "image/png", png,
  );
  // belongs_to's targetNames: the client turns {post} into {postId}
  const second = await client.models.Comment.create({ post: post.data, content: "two" });
  seen.byRecord = result(second);

  const got = await client.models.Post.get(
    { id: postId }, { selectionSet: ["id", "title", "comments.*"] },
  );
  seen.selected = result(got);

  const lazy = await post.data.comments();
  seen.lazy = { contents: lazy.data.map((c) => c.content).sort(), errors: lazy.errors ?? null };
  const parent = await first.data.post();
  seen.parent = result(parent);

  const user = await client.models.User.create({ name: "Ada" });
  await client.models.Profile.create({ userId: user.data.id, bio: "first programmer" });
  const profile = await user.data.profile();
  seen.profile = result(profile);
  const owner = await profile.data.user();
  seen.owner = result(owner);

  // Amplify's delete sends the id alone (deleteFiles keeps its default, false): the comments go,
  // their files stay; an app that wants the files gone asks for it in its own mutation
  const kept = await client.models.Post.create({ title: "Second" });
  const keptComment = await client.models.Comment.create({ postId: kept.data.id, content: "k" });
  await attach(
    "attachCommentAttachment", { commentId: keptComment.data.id }, "kept.png", "image/png", png,
  );
  seen.deleted = result(await client.models.Post.delete({ id: kept.data.id }));

  const withFiles = await client.graphql({
    query: `mutation($id: ID!) { deletePost(input: {id: $id, deleteFiles: true}) { id } }`,
    variables: { id: postId },
    authMode: "lambda", // the built-in rules: records take the API key, files a signed-in user
    authToken: process.env.USER_TOKEN,
  }, { "x-api-key": outputs.data.api_key });
  seen.deletedWithFiles = result(withFiles);
  seen.afterGet = result(await client.models.Post.get({ id: postId }));
  seen.afterComments = result(await client.models.Comment.list());
  seen.ids = { postId, keptId: kept.data.id, keptCommentId: keptComment.data.id };
} catch (error) {
  seen.crashed = String(error?.stack ?? JSON.stringify(error));
}
console.log(JSON.stringify(seen));
process.exit(0);
