/* runletter preview: fit each frame to its email, and rebuild the page on "reload" events. */
window.runletter = (() => {
  const heights = new Map();

  function fit(frame) {
    try {
      const height = frame.contentDocument.documentElement.offsetHeight;
      if (height > 0) {
        frame.style.height = height + "px";
        heights.set(frame.dataset.key, height);
      }
    } catch (e) { /* not loaded yet */ }
  }

  function frameLoaded(frame) {
    fit(frame);
    try {
      new ResizeObserver(() => fit(frame)).observe(frame.contentDocument.documentElement);
    } catch (e) { /* older browsers: one fit is enough */ }
  }

  function generation() {
    const content = document.getElementById("content");
    return content ? content.dataset.generation : "";
  }

  let busy = false;
  let again = false;

  async function refresh() {
    if (busy) { again = true; return; }
    busy = true;
    try {
      const answer = await fetch(location.href, { cache: "no-store" });
      const doc = new DOMParser().parseFromString(await answer.text(), "text/html");
      const fresh = doc.getElementById("content");
      const current = document.getElementById("content");
      if (!fresh || !current) { location.reload(); return; }
      const scrolled = new Map();
      current.querySelectorAll("pre[data-key]").forEach((pre) => scrolled.set(pre.dataset.key, pre.scrollTop));
      // New frames start at the old heights, so the page does not jump while they load.
      fresh.querySelectorAll("iframe[data-key]").forEach((frame) => {
        const height = heights.get(frame.dataset.key);
        if (height) frame.style.height = height + "px";
      });
      current.replaceWith(document.adoptNode(fresh));
      document.title = doc.title;
      fresh.querySelectorAll("pre[data-key]").forEach((pre) => {
        pre.scrollTop = scrolled.get(pre.dataset.key) || 0;
      });
    } catch (e) {
      setTimeout(refresh, 1000);  // the server is restarting: try again
    } finally {
      busy = false;
      if (again) { again = false; refresh(); }
    }
  }

  function connect() {
    const live = document.getElementById("live");
    const events = new EventSource("/events");
    events.addEventListener("hello", (event) => {
      live.className = "live on";
      live.textContent = "live";
      if (event.data !== generation()) refresh();  // changed while we were away
    });
    events.addEventListener("reload", (event) => {
      if (event.data !== generation()) refresh();
    });
    events.onerror = () => {
      live.className = "live off";
      live.textContent = "reconnecting…";
    };
  }

  document.addEventListener("DOMContentLoaded", connect);
  return { frameLoaded, refresh };
})();
