// A small JSON API: parses the JSON body, transforms it, answers JSON.
export default {
  async fetch(request) {
    if (request.method !== "POST") {
      return Response.json({ error: "POST a JSON object" }, { status: 405 });
    }
    const input = await request.json();
    const items = Array.isArray(input.items) ? input.items : [];
    return Response.json({
      id: input.id ?? null,
      count: items.length,
      total: items.reduce((s, x) => s + (Number(x.price) || 0) * (Number(x.qty) || 1), 0),
      names: items.map((x) => String(x.name ?? "").toUpperCase()),
    });
  },
};
