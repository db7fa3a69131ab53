# charjax developer entry points. Every target sets up .venv first when needed.
PY := .venv/bin/python
VENV_STAMP := .venv/.installed

.PHONY: setup demo test lint bench clean

$(VENV_STAMP): pyproject.toml
	python3 -m venv .venv
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[all,dev]'
	touch $(VENV_STAMP)

setup: $(VENV_STAMP)

demo: setup
	.venv/bin/charjax demo

# One test process per core (pytest-xdist); a module's tests stay in one process, so its
# fixtures are built once. `pytest tests/test_x.py` still runs serially.
test: setup
	$(PY) -m pytest -q -n auto --dist loadscope

lint: setup
	.venv/bin/ruff check .
	.venv/bin/ruff format --check charjax cli apps tests tools benchmarks

bench: setup
	$(PY) benchmarks/run_all.py --quick

# The accelerator benchmark (README "GPU and TPU"): the machine's own python3, no setup step
# (it needs jax, flax, optax, orbax-checkpoint and torch; charjax runs from this checkout).
.PHONY: bench-gpu
bench-gpu:
	PYTHONPATH=. python3 benchmarks/gpu.py --json runs/bench/gpu.json

# docs/gui.png: the GUI with a drawn letter, rendered offscreen; needs a run under ./runs
# (for example after `make demo`).
.PHONY: screenshot
screenshot: setup
	$(PY) -m charjax.apps.screenshot --out docs/gui.png

# The bundled default model, charjax/pretrained/ (MODEL_CARD.md has its numbers): every font
# installed here (README's apt line plus the handwriting-style packages in MODEL_CARD.md),
# plain and stroke-style renderings, plus extra stroke-style renderings of the handwriting and
# script families that fall in the training split, strong augmentation; then 3,000 steps more
# with the npm handwriting and cursive fonts of `make hand-fonts` (below) in the mixture,
# 3,000 more with the npm printed fonts of `make print-fonts` too, 6,000 more with the 85
# further handwriting families of `make more-hand-fonts` (the best of its checkpoints by
# validation accuracy is kept), and 6,000 more with the school handwriting models of `make
# school-fonts` too (its best by validation is kept), and 3,000 more on that mixture with the
# handwriting parts teaching shape but not case (`:nocase`; its best by validation is
# exported); then the drawn-glyph set, export and measurements (written to
# $(PRETRAINED_WORK)/numbers.json).
# The synthetic writers of `charjax data handwriting` are not in it: continuing the model on
# them lowered the drawn-glyph set (MODEL_CARD.md, "Tried and not shipped").
PRETRAINED_WORK := build/pretrained
PRETRAINED_STEPS := 16000
PRETRAINED_HAND := --family Breip --family "Comic Neue" --family "Dancing Script" \
	--family Delphine --family DkgHandwriting --family Purisa --family "Chancery Uralic" \
	--family Z003 --family Ecolier --family Havana --family Isabella --family "Kaushan Script" \
	--family "Klee One" --family Kristi --family "Leckerli One" --family Rufscript
PRETRAINED_MIX := $(PRETRAINED_WORK)/fonts:0.6+$(PRETRAINED_WORK)/hand:0.25+$(PRETRAINED_WORK)/handfonts:0.15
PRETRAINED_MIX2 := $(PRETRAINED_WORK)/fonts:0.5+$(PRETRAINED_WORK)/hand:0.2+$(PRETRAINED_WORK)/handfonts:0.15+$(PRETRAINED_WORK)/printfonts:0.15
PRETRAINED_MIX3 := $(PRETRAINED_WORK)/fonts:0.45+$(PRETRAINED_WORK)/hand:0.15+$(PRETRAINED_WORK)/handfonts:0.15+$(PRETRAINED_WORK)/morehand:0.15+$(PRETRAINED_WORK)/printfonts:0.1
PRETRAINED_MIX4 := $(PRETRAINED_WORK)/fonts:0.45+$(PRETRAINED_WORK)/hand:0.13+$(PRETRAINED_WORK)/handfonts:0.13+$(PRETRAINED_WORK)/morehand:0.13+$(PRETRAINED_WORK)/school:0.08+$(PRETRAINED_WORK)/printfonts:0.08
# The fifth continuation's mixture is the fourth's with the handwriting parts marked :nocase:
# they teach c o s v w x z's shape, and the printed fonts alone teach those letters' case.
PRETRAINED_MIX5 := $(PRETRAINED_WORK)/fonts:0.45+$(PRETRAINED_WORK)/hand:0.13:nocase+$(PRETRAINED_WORK)/handfonts:0.13:nocase+$(PRETRAINED_WORK)/morehand:0.13:nocase+$(PRETRAINED_WORK)/school:0.08:nocase+$(PRETRAINED_WORK)/printfonts:0.08
# $(call continue_run,FROM,DATA,TO,STEPS,EVAL_EVERY): the run FROM continued on the mixture
# DATA into TO (under $(PRETRAINED_WORK)), with every continuation's optimiser settings.
define continue_run
	nice -n 5 .venv/bin/charjax train --init-from $(PRETRAINED_WORK)/$(1) --data $(2) \
		--workdir $(PRETRAINED_WORK)/$(3) --steps $(4) --lr 0.0005 --batch-size 128 \
		--augment 1.5 --eval-every $(5) --no-progress
endef
.PHONY: pretrained
pretrained: setup hand-fonts print-fonts more-hand-fonts school-fonts outline-fonts
	rm -rf $(PRETRAINED_WORK)
	.venv/bin/charjax data fonts --out $(PRETRAINED_WORK)/fonts --variants 2 --stroke-variants 2 --no-progress
	.venv/bin/charjax data fonts --out $(PRETRAINED_WORK)/hand $(PRETRAINED_HAND) \
		--variants 2 --stroke-variants 14 --seed 1 --no-progress
	.venv/bin/charjax data fonts --out $(PRETRAINED_WORK)/handfonts --fonts $(HAND_FONTS) \
		--no-system-fonts --variants 2 --stroke-variants 14 --seed 3 --no-progress
	.venv/bin/charjax data fonts --out $(PRETRAINED_WORK)/printfonts --fonts $(PRINT_FONTS) \
		--no-system-fonts --variants 2 --stroke-variants 2 --seed 4 --no-progress
	.venv/bin/charjax data fonts --out $(PRETRAINED_WORK)/morehand --fonts $(MORE_HAND_FONTS) \
		--no-system-fonts --variants 2 --stroke-variants 14 --seed 5 --no-progress
	.venv/bin/charjax data fonts --out $(PRETRAINED_WORK)/school --fonts $(SCHOOL_FONTS) \
		--no-system-fonts --variants 2 --stroke-variants 6 --seed 6 --no-progress
	.venv/bin/charjax data fonts --out $(PRETRAINED_WORK)/outline --fonts $(OUTLINE_FONTS) \
		--no-system-fonts --variants 2 --seed 9 --no-progress
	nice -n 5 .venv/bin/charjax train --arch resnet-small \
		--data $(PRETRAINED_WORK)/fonts+$(PRETRAINED_WORK)/hand \
		--workdir $(PRETRAINED_WORK)/run --steps $(PRETRAINED_STEPS) --augment 1.5 \
		--eval-every 2000 --no-progress
	$(call continue_run,run,$(PRETRAINED_MIX),run-hand-fonts,3000,1000)
	$(call continue_run,run-hand-fonts,$(PRETRAINED_MIX2),run-print-fonts,3000,1000)
	$(call continue_run,run-print-fonts,$(PRETRAINED_MIX3),run-more-hand,6000,1500)
	$(call continue_run,run-more-hand,$(PRETRAINED_MIX4),run-school,6000,1500)
	$(call continue_run,run-school,$(PRETRAINED_MIX5),run-shape,3000,1000)
	$(PY) -m tools.drawn_set --out $(PRETRAINED_WORK)/drawn
	$(PY) -m tools.bundle --run $(PRETRAINED_WORK)/run-shape --fonts $(PRETRAINED_WORK)/fonts \
		--drawn $(PRETRAINED_WORK)/drawn --outline $(PRETRAINED_WORK)/outline \
		--json $(PRETRAINED_WORK)/numbers.json

# Handwriting and cursive fonts for both bundled models, from the npm registry's @fontsource
# packages (SIL Open Font License; latin subset, every weight): 27 joined or cursive scripts
# and 17 hand-print families. None is of the benchmark's script families (lines.SCRIPT_FAMILIES).
HAND_FONTS := build/hand-fonts
HAND_FONT_PACKAGES := alex-brush allura bad-script birthstone cedarville-cursive cookie \
	corinthia courgette damion ephesis grand-hotel great-vibes homemade-apple italianno \
	licorice marck-script ms-madi nanum-brush-script pacifico parisienne pinyon-script \
	rochester sacramento satisfy tangerine whisper yellowtail architects-daughter caveat \
	caveat-brush delicious-handrawn freehand gloria-hallelujah gochi-hand handlee \
	indie-flower kalam nanum-pen-script patrick-hand reenie-beanie schoolbell \
	shadows-into-light sue-ellen-francisco swanky-and-moo-moo
.PHONY: hand-fonts
hand-fonts: $(HAND_FONTS)/.fetched
$(HAND_FONTS)/.fetched:
	$(call fontsource,$(HAND_FONTS),$(HAND_FONT_PACKAGES))

# More handwriting for the classifier (issue 14), @fontsource too: 53 more joined or cursive
# scripts and 32 more hand-print families, none of the lists above and none of the benchmark's
# script families. `make pretrained` uses them (its third continuation), and the line model's
# fourth stage (`make pretrained-lines`).
MORE_HAND_FONTS := build/more-hand-fonts
MORE_HAND_FONT_PACKAGES := mr-dafoe mrs-saint-delafield herr-von-muellerhoff \
	monsieur-la-doulaise petit-formal-script qwigley rouge-script ruthie meddon miss-fajardose \
	norican niconne playball euphoria-script arizonia clicker-script engagement lovers-quarrel \
	meow-script mea-culpa montez mr-bedfort mr-de-haviland princess-sofia seaweed-script sofia \
	stalemate dr-sugiyama comforter estonia fuggles grechen-fuemen gwendolyn hurricane \
	inspiration island-moments love-light \
	imperial-script ingrid-darling the-nautigal twinkle-star vujahday-script send-flowers updock \
	moon-dance bilbo fondamento felipa oleo-script yesteryear vibur style-script charm \
	dawning-of-a-new-day la-belle-aurore zeyada calligraffitti nothing-you-could-do coming-soon \
	covered-by-your-grace just-another-hand rock-salt permanent-marker neucha short-stack \
	walter-turncoat annie-use-your-telescope loved-by-the-king the-girl-next-door \
	waiting-for-the-sunrise crafty-girls delius mali itim sriracha shadows-into-light-two gaegu \
	gamja-flower give-you-glory kranky just-me-again-down-here dekko over-the-rainbow sunshiney \
	sedgwick-ave
.PHONY: more-hand-fonts
more-hand-fonts: $(MORE_HAND_FONTS)/.fetched
$(MORE_HAND_FONTS)/.fetched:
	$(call fontsource,$(MORE_HAND_FONTS),$(MORE_HAND_FONT_PACKAGES))

# School handwriting models for the classifier (issue 14), @fontsource too: the letterforms
# children are taught to write, as TypeTogether's Playwrite families give them for 34
# countries (41 models: open and closed 4, 7 and Z with and without a bar, 1 with a flag or a
# plain stroke, looped and plain capitals) and the five Australian state models (Edu ...).
# `make pretrained` uses them (its fourth continuation), and the line model's fourth stage.
SCHOOL_FONTS := build/school-fonts
SCHOOL_FONT_PACKAGES := $(addprefix playwrite-,ar at au-qld au-vic be-wal br ca cl co cu cz \
	de-grund de-sas dk-loopet dk-uloopet es es-deco fr-moderne fr-trad hr hr-lijeva hu id ie in \
	is mx ng-modern nl no nz pe pl pt ro sk tz us-modern us-trad vn za) \
	edu-nsw-act-foundation edu-qld-beginner edu-sa-beginner edu-tas-beginner \
	edu-vic-wa-nt-beginner
.PHONY: school-fonts
school-fonts: $(SCHOOL_FONTS)/.fetched
$(SCHOOL_FONTS)/.fetched:
	$(call fontsource,$(SCHOOL_FONTS),$(SCHOOL_FONT_PACKAGES))

# Printed fonts for the line model's printed lines, from @fontsource too: 59 families (sans,
# serif, mono, condensed and square "techno" faces; 337 faces with their weights), none of the
# benchmark's test split (lines.faces_in checks). Four are installed fonts too (EB Garamond,
# Inconsolata, Lato, Manrope), of the font dataset's validation split (MODEL_CARD.md).
PRINT_FONTS := build/print-fonts
PRINT_FONT_PACKAGES := orbitron michroma exo-2 saira saira-condensed rajdhani chakra-petch \
	oxanium russo-one audiowide aldrich share-tech-mono tomorrow titillium-web teko khand \
	electrolize quantico sarpanch iceland lato montserrat poppins raleway ubuntu barlow \
	barlow-condensed fira-sans-condensed archivo-narrow oswald anton pathway-gothic-one abel \
	asap-condensed encode-sans-condensed ibm-plex-sans-condensed ibm-plex-mono ibm-plex-serif \
	merriweather playfair-display libre-baskerville crimson-text eb-garamond lora bitter arvo \
	zilla-slab space-mono space-grotesk inconsolata source-code-pro overpass work-sans manrope \
	nunito mulish josefin-sans kanit prompt
.PHONY: print-fonts
print-fonts: $(PRINT_FONTS)/.fetched
$(PRINT_FONTS)/.fetched:
	$(call fontsource,$(PRINT_FONTS),$(PRINT_FONT_PACKAGES))

# Hollow letters, to measure the bundled model on (MODEL_CARD.md), never to train on: the six
# @fontsource outline families whose faces pass the font checks (Bungee Outline is capitals
# only), none of them a relative of a training font.
OUTLINE_FONTS := build/outline-fonts
OUTLINE_FONT_PACKAGES := kumar-one-outline londrina-outline londrina-shadow moirai-one \
	rubik-doodle-shadow train-one
.PHONY: outline-fonts
outline-fonts: $(OUTLINE_FONTS)/.fetched
$(OUTLINE_FONTS)/.fetched:
	$(call fontsource,$(OUTLINE_FONTS),$(OUTLINE_FONT_PACKAGES))

# $(call fontsource,DIR,PACKAGES): the latin upright faces, every weight, of the @fontsource
# PACKAGES (npm pack: no install, no node_modules) into DIR.
define fontsource
	rm -rf $(1) && mkdir -p $(1)/packages
	cd $(1)/packages && npm pack --silent $(addprefix @fontsource/,$(2)) >/dev/null
	for f in $(1)/packages/*.tgz; do \
		tar -xzf $$f -C $(1) --strip-components=2 --wildcards 'package/files/*-latin-[0-9]*-normal.woff'; \
	done
	rm -rf $(1)/packages && touch $(1)/.fetched
endef

# The bundled line model, charjax/pretrained/lines/ (MODEL_CARD.md, "Line model"), in four
# stages, each on 40,000 lines of its own seed (about 5 min to render on 2 cores): 8,000 steps
# on lines from the train-split fonts, the hand fonts above (15%) and the synthetic train
# writers (about 60 min); 3,000 more at a quarter of the learning rate with another seed's
# lines (about 20 min); 3,000 more with the printed npm fonts in the printed lines too (about
# 20 min); 3,000 more with the more-hand and school fonts among the hand fonts too (about 25
# min, 10 of them rendering). The last model is copied in whole.
PRETRAINED_LINES := build/pretrained-lines
LINE_FONTS := --hand-fonts $(HAND_FONTS) --no-progress
# $(call continue_lines,FROM,TO,EXTRA): stage FROM's model continued into stage TO for 3,000
# steps at a quarter of the learning rate, on a new cache whose seed is FROM, with EXTRA fonts
# (given after the hand fonts, whose order they keep).
define continue_lines
	nice -n 5 .venv/bin/charjax train-lines --workdir $(PRETRAINED_LINES)/$(2) --steps 3000 \
		--lr 5e-4 --seed $(1) --init $(PRETRAINED_LINES)/$(1)/model \
		--cache $(PRETRAINED_LINES)/cache-$(2) $(LINE_FONTS) $(3)
endef
.PHONY: pretrained-lines
pretrained-lines: setup hand-fonts print-fonts more-hand-fonts school-fonts
	rm -rf $(PRETRAINED_LINES)
	nice -n 5 .venv/bin/charjax train-lines --workdir $(PRETRAINED_LINES)/1 --steps 8000 \
		--cache $(PRETRAINED_LINES)/cache-1 $(LINE_FONTS)
	$(call continue_lines,1,2)
	$(call continue_lines,2,3,--print-fonts $(PRINT_FONTS))
	$(call continue_lines,3,4,--print-fonts $(PRINT_FONTS) --hand-fonts $(MORE_HAND_FONTS) \
		--hand-fonts $(SCHOOL_FONTS))
	rm -rf charjax/pretrained/lines
	cp -r $(PRETRAINED_LINES)/4/model charjax/pretrained/lines

clean:
	rm -rf .venv build *.egg-info runs .pytest_cache
