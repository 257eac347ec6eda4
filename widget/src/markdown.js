// The small, safe subset of Markdown bot messages use: paragraphs and line breaks,
// "- " bullet lists, **bold**, *italic*, `code`, [text](https://link) and bare links.
// Everything is HTML-escaped first, so a message can never inject markup.

const ESCAPES = { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" };

export function escapeHtml(text) {
  return String(text).replace(/[&<>"']/g, (c) => ESCAPES[c]);
}

function safeUrl(url) {
  return /^(https?:|mailto:|tel:)/i.test(url) ? url : null;
}

function link(url, label) {
  const href = safeUrl(url);
  if (!href) return label;
  return `<a href="${href}" target="_blank" rel="noopener noreferrer">${label}</a>`;
}

function inline(escaped) {
  // Links first, kept aside so the emphasis rules do not touch their URLs.
  const kept = [];
  const keep = (html) => `\u0000${kept.push(html) - 1}\u0000`;
  let out = escaped
    .replace(/`([^`]+)`/g, (_, code) => keep(`<code>${code}</code>`))
    .replace(/\[([^\]]+)\]\(([^)\s]+)\)/g, (_, label, url) => keep(link(url, label)))
    .replace(/\bhttps?:\/\/[^\s<]+[^\s<.,;:!?)]/g, (url) => keep(link(url, url)))
    .replace(/\*\*([^*]+)\*\*/g, "<strong>$1</strong>")
    .replace(/(^|[^*])\*([^*\s][^*]*)\*/g, "$1<em>$2</em>");
  return out.replace(/\u0000(\d+)\u0000/g, (_, i) => kept[Number(i)]);
}

export function renderMarkdown(text) {
  const blocks = escapeHtml(text).split(/\n{2,}/);
  return blocks
    .map((block) => {
      const lines = block.split("\n");
      if (lines.every((line) => /^\s*[-*] /.test(line))) {
        const items = lines.map((line) => `<li>${inline(line.replace(/^\s*[-*] /, ""))}</li>`);
        return `<ul>${items.join("")}</ul>`;
      }
      return `<p>${lines.map(inline).join("<br>")}</p>`;
    })
    .join("");
}
