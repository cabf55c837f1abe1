// keyhole console: live updates and countdowns. Loaded as a file (the
// Content-Security-Policy allows no inline script). Fragments fetched
// here are rendered and escaped by the server; scripts inside markup
// inserted this way never run.
(function () {
  'use strict';
  function refresh() {
    document.querySelectorAll('[data-live]').forEach(function (el) {
      fetch(el.getAttribute('data-live'), { credentials: 'same-origin', headers: { Accept: 'text/html' } })
        .then(function (r) { return r.ok ? r.text() : null; })
        .then(function (text) {
          if (text === null) { return; }
          var tpl = document.createElement('template');
          tpl.innerHTML = text;
          el.replaceChildren(tpl.content);
          el.setAttribute('data-updated', String(Date.now()));
          tick();
        })
        .catch(function () {});
    });
  }
  if (document.querySelector('[data-live]') && window.EventSource) {
    var es = new EventSource('/console/events');
    es.addEventListener('change', refresh);
    es.addEventListener('open', function () { document.body.setAttribute('data-live-connected', '1'); });
  }
  function fmt(ms) {
    var s = Math.floor(ms / 1000), h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60);
    s = s % 60;
    return (h ? h + 'h ' : '') + (h || m ? m + 'm ' : '') + s + 's';
  }
  function tick() {
    document.querySelectorAll('[data-expires]').forEach(function (el) {
      var left = parseInt(el.getAttribute('data-expires'), 10) - Date.now();
      el.textContent = left <= 0 ? 'expired' : fmt(left) + ' left';
    });
  }
  tick();
  setInterval(tick, 1000);
  document.querySelectorAll('select[name=for]').forEach(function (sel) {
    var custom = sel.form && sel.form.querySelector('[name=custom]');
    function update() { if (custom) { custom.hidden = sel.value !== 'custom'; } }
    sel.addEventListener('change', update);
    update();
  });
})();
