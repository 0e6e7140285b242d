// The SQL workbench's editor: CodeMirror 6 with the SQL language and completion of the lakehouse's
// schemas, tables and columns. scripts/web-assets.sh bundles this file (esbuild) into
// static/vendor/sql-editor.js, which sets window.LakehouseEditor.
import { EditorView, basicSetup } from "codemirror";
import { keymap, placeholder } from "@codemirror/view";
import { Prec } from "@codemirror/state";
import { sql, PostgreSQL } from "@codemirror/lang-sql";
import { HighlightStyle, syntaxHighlighting } from "@codemirror/language";
import { tags as t } from "@lezer/highlight";

// Token colours come from CSS variables (app.css sets them for the light and the dark theme): the
// default style's dark blues and purples do not read on a dark background.
const themed = HighlightStyle.define([
  { tag: [t.keyword, t.operatorKeyword, t.modifier], color: "var(--cm-keyword)", fontWeight: "600" },
  { tag: [t.string, t.special(t.string)], color: "var(--cm-string)" },
  { tag: [t.number, t.bool, t.null, t.atom], color: "var(--cm-number)" },
  { tag: [t.comment, t.lineComment, t.blockComment], color: "var(--cm-comment)", fontStyle: "italic" },
  { tag: [t.typeName, t.standard(t.name)], color: "var(--cm-type)" },
  { tag: [t.special(t.name), t.propertyName], color: "var(--cm-name)" },
  { tag: [t.operator, t.punctuation, t.bracket], color: "var(--cm-punct)" },
]);

function create(textarea, options) {
  const opts = options || {};
  const view = new EditorView({
    doc: textarea.value,
    extensions: [
      basicSetup,
      syntaxHighlighting(themed),
      sql({ dialect: PostgreSQL, schema: opts.schema || {}, upperCaseKeywords: true }),
      opts.placeholder ? placeholder(opts.placeholder) : [],
      Prec.highest(keymap.of([{ key: "Mod-Enter", run: function () { if (opts.onRun) opts.onRun(); return true; } }])),
      EditorView.updateListener.of(function (u) { if (u.docChanged) textarea.value = u.state.doc.toString(); }),
      EditorView.contentAttributes.of({ "aria-label": "SQL editor" }),
    ],
  });
  textarea.style.display = "none";
  textarea.parentNode.insertBefore(view.dom, textarea.nextSibling);
  return {
    view: view,
    getValue: function () { return view.state.doc.toString(); },
    setValue: function (text) {
      view.dispatch({ changes: { from: 0, to: view.state.doc.length, insert: text } });
      textarea.value = text;
    },
    insert: function (text) {
      const r = view.state.selection.main;
      view.dispatch({ changes: { from: r.from, to: r.to, insert: text }, selection: { anchor: r.from + text.length } });
      view.focus();
    },
    focus: function () { view.focus(); },
  };
}

window.LakehouseEditor = { create: create };
