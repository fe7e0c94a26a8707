(function () {
  "use strict";
  var data = JSON.parse(document.getElementById("movieid-data").textContent);
  var video = document.querySelector("aside.player video");
  var shots = Array.prototype.slice.call(document.querySelectorAll("article.shot"));
  var byIndex = new Map(shots.map(function (el) { return [el.dataset.index, el]; }));
  var filter = document.getElementById("filter");
  var count = document.getElementById("count");

  function mark(el) {
    shots.forEach(function (s) { s.classList.toggle("current", s === el); });
  }

  function select(index, seek) {
    var el = byIndex.get(String(index));
    if (!el) { return; }
    mark(el);
    if (seek && video) {
      video.currentTime = Number(el.dataset.start) + 0.001;
    }
  }

  document.addEventListener("click", function (event) {
    var link = event.target.closest("[data-shot]");
    if (link) { select(link.dataset.shot, true); }
  });

  function applyFilter() {
    var query = filter.value.trim().toLowerCase();
    var shown = 0;
    shots.forEach(function (el) {
      var names = el.dataset.names ? el.dataset.names.split("|") : [];
      var hit = !query || names.some(function (n) { return n.indexOf(query) !== -1; });
      el.hidden = !hit;
      if (hit) { shown += 1; }
    });
    document.querySelectorAll(".timeline .row").forEach(function (row) {
      row.classList.toggle("dim", Boolean(query) && row.dataset.name.indexOf(query) === -1);
    });
    count.textContent = shown + " of " + shots.length + " shots";
  }

  filter.addEventListener("input", applyFilter);
  applyFilter();

  if (video) {
    video.addEventListener("timeupdate", function () {
      var t = video.currentTime;
      var shot = data.shots.find(function (s) { return t >= s.start && t < s.end; });
      if (shot) { mark(byIndex.get(String(shot.index))); }
    });
  }
  if (location.hash.indexOf("#shot-") === 0) {
    select(location.hash.slice(6), false);
  }
}());
