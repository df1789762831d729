import type { Rng } from '../random.js';

/**
 * A continuous model of a short-axis cardiac MR slab: tissues as functions of in-plane body
 * coordinates (u = patient left, v = anterior, mm) and the long-axis position t (0 at the
 * base of the ventricles, 1 at the apex). Only the heart carries ACDC labels; the rest of the
 * thorax is there so that background is not trivially dark.
 */
export enum Tissue {
  Air = 0,
  Fat,
  ChestMuscle,
  Lung,
  Liver,
  Bone,
  Mediastinum,
  AortaBlood,
  LvBlood,
  Papillary,
  Myocardium,
  RvBlood,
  RvWall,
  PericardialFat,
  StomachFluid,
}
export const TISSUE_COUNT = 15;

/** ACDC label of each tissue: 1 RV cavity, 2 LV myocardium, 3 LV cavity (papillary muscles included). */
export const TISSUE_LABEL: readonly number[] = [0, 0, 0, 0, 0, 0, 0, 0, 3, 3, 2, 1, 0, 0, 0];

export interface HeartShape {
  /** LV centre in body coordinates, mm. */
  centre: [number, number];
  /** Endocardial semi-axes at the base, mm, and their orientation in the body frame. */
  cavityA: number;
  cavityB: number;
  cavityAngle: number;
  /** Small lobulation of the endocardium: amplitude (fraction) and phase of the 3rd harmonic. */
  lobeAmp: number;
  lobePhase: number;
  /** Long-axis position where the cavity closes (the rest down to t = 1 is the apical cap). */
  cavityEnd: number;
  /** Mean wall thickness and its first/second angular harmonics (fractions) and phases. */
  wall: number;
  wall1: number;
  wall1Phase: number;
  wall2: number;
  wall2Phase: number;
  /** RV: direction from the LV centre (body frame), offset, semi-axes along/across, free wall. */
  rvAngle: number;
  rvOffset: number;
  rvAlong: number;
  rvAcross: number;
  rvWall: number;
  /** Long-axis position where the RV has shrunk away. */
  rvEnd: number;
  /** Papillary muscles: angles and radii (mm at the base). */
  papillary: { angle: number; radius: number }[];
  /** Pericardial fat band: maximum width, mm, and the direction it is thickest. */
  fatWidth: number;
  fatAngle: number;
}

export interface ThoraxShape {
  /** Body outline semi-axes, mm; subcutaneous fat and chest-wall muscle widths, mm. */
  bodyU: number;
  bodyV: number;
  subcutaneousFat: number;
  chestMuscle: number;
  lungs: { centre: [number, number]; a: number; b: number }[];
  spine: { centre: [number, number]; r: number };
  aorta: { centre: [number, number]; r: number };
  /** Other vessels (blood-bright circles) in lungs and mediastinum, so bright ≠ LV. */
  vessels: { centre: [number, number]; r: number }[];
  /** Fluid-filled stomach on the left below the heart, appearing from t = stomachStart. */
  stomachStart: number;
  stomach: { centre: [number, number]; a: number; b: number };
  /** Liver appears below t = liverStart and grows toward the apex. */
  liverStart: number;
  liver: { centre: [number, number]; a: number; b: number };
}

export interface Anatomy {
  heart: HeartShape;
  thorax: ThoraxShape;
}

export function sampleAnatomy(rng: Rng): Anatomy {
  const u = (lo: number, hi: number) => rng.uniform(lo, hi);
  const cavityA = u(19, 29);
  const bodyU = u(140, 185);
  const bodyV = u(95, 130);
  const heart: HeartShape = {
    centre: [u(15, 35), u(0, 25)],
    cavityA,
    cavityB: cavityA * u(0.75, 1.0),
    cavityAngle: u(0, Math.PI),
    lobeAmp: u(0, 0.06),
    lobePhase: u(0, 2 * Math.PI),
    cavityEnd: u(0.8, 0.92),
    wall: u(7, 12),
    wall1: u(0, 0.25),
    wall1Phase: u(0, 2 * Math.PI),
    wall2: u(0, 0.1),
    wall2Phase: u(0, 2 * Math.PI),
    rvAngle: u(2.1, 3.0),
    rvOffset: u(0.3, 0.55),
    rvAlong: u(0.95, 1.25),
    rvAcross: u(1.3, 1.8),
    rvWall: u(2, 4),
    rvEnd: u(0.7, 0.95),
    papillary: [
      { angle: u(-2.2, -1.4), radius: u(2, 4) },
      { angle: u(-0.6, 0.2), radius: u(2, 4) },
    ],
    fatWidth: u(0, 6),
    fatAngle: u(-Math.PI, 0),
  };
  const thorax: ThoraxShape = {
    bodyU,
    bodyV,
    subcutaneousFat: u(6, 20),
    chestMuscle: u(6, 15),
    lungs: [
      { centre: [bodyU * u(0.38, 0.5), u(-15, 5)], a: bodyU * u(0.3, 0.4), b: bodyV * u(0.55, 0.72) },
      { centre: [-bodyU * u(0.38, 0.5), u(-15, 5)], a: bodyU * u(0.3, 0.4), b: bodyV * u(0.55, 0.72) },
    ],
    spine: { centre: [u(-8, 8), -bodyV + u(28, 40)], r: u(12, 17) },
    aorta: { centre: [u(15, 30), -bodyV + u(45, 60)], r: u(9, 14) },
    vessels: Array.from({ length: rng.int(3, 7) }, () => ({
      centre: [rng.uniform(-0.7, 0.7) * bodyU, rng.uniform(-0.6, 0.6) * bodyV] as [number, number],
      r: rng.uniform(2.5, 8),
    })),
    stomachStart: u(0.4, 0.9),
    stomach: { centre: [bodyU * u(0.25, 0.5), u(-30, 10)], a: u(30, 55), b: u(25, 45) },
    liverStart: u(0.25, 0.7),
    liver: { centre: [-bodyU * u(0.2, 0.45), u(-20, 20)], a: u(60, 90), b: u(55, 80) },
  };
  return { heart, thorax };
}

/**
 * Everything about the anatomy that depends only on t, computed once per sub-slice so the
 * per-point function stays cheap.
 */
export class SlabSection {
  readonly t: number;
  private readonly h: HeartShape;
  private readonly th: ThoraxShape;
  /** Cavity scale (0 = closed) and wall scale (0 = beyond the apex). */
  private readonly cavScale: number;
  private readonly wallScale: number;
  private readonly rvScale: number;
  private readonly liverScale: number;
  private readonly stomachScale: number;
  private readonly cosC: number;
  private readonly sinC: number;
  /** Bounding radius of the heart (LV + RV + fat) at this t, for a cheap early exit. */
  private readonly heartRadius: number;
  private readonly lobeCos: number;
  private readonly lobeSin: number;
  private readonly w1Cos: number;
  private readonly w1Sin: number;
  private readonly w2Cos: number;
  private readonly w2Sin: number;
  private readonly fatCos: number;
  private readonly fatSin: number;
  private readonly rvCos: number;
  private readonly rvSin: number;
  private readonly rvCentre: [number, number];
  private readonly rvAlongMm: number;
  private readonly rvAcrossMm: number;
  /** Squared normalised RV radius inside which it is cavity rather than free wall. */
  private readonly rvBloodRho2: number;
  /** Papillary muscle circles at this t: x, y, radius (mm, relative to the LV centre) triplets. */
  private readonly papillary: number[];

  constructor(anatomy: Anatomy, t: number) {
    this.t = t;
    this.h = anatomy.heart;
    this.th = anatomy.thorax;
    const h = this.h;
    const tc = Math.max(0, t);
    this.cavScale = tc < h.cavityEnd ? Math.sqrt(1 - (tc / h.cavityEnd) ** 2) : 0;
    this.wallScale = tc <= h.cavityEnd ? 1 : tc < 1 ? Math.sqrt(1 - ((tc - h.cavityEnd) / (1 - h.cavityEnd)) ** 2) : 0;
    this.rvScale = tc < h.rvEnd ? Math.sqrt(1 - (tc / h.rvEnd) ** 2) : 0;
    this.liverScale = t > this.th.liverStart ? Math.sqrt((t - this.th.liverStart) / (1 - this.th.liverStart)) : 0;
    this.stomachScale = t > this.th.stomachStart ? Math.min(1, Math.sqrt((t - this.th.stomachStart) / 0.3)) : 0;
    this.cosC = Math.cos(h.cavityAngle);
    this.sinC = Math.sin(h.cavityAngle);
    const rEpi = h.cavityA * 1.1 + h.wall * 1.4;
    this.heartRadius = rEpi * (1 + h.rvOffset + h.rvAlong + h.rvAcross) + h.fatWidth + 5;
    // cos(3θ + φ) = cos3θ·cosφ − sin3θ·sinφ; cos(θ − φ) = cosθ·cosφ + sinθ·sinφ; likewise 2θ.
    this.lobeCos = Math.cos(h.lobePhase);
    this.lobeSin = Math.sin(h.lobePhase);
    this.w1Cos = Math.cos(h.wall1Phase);
    this.w1Sin = Math.sin(h.wall1Phase);
    this.w2Cos = Math.cos(h.wall2Phase);
    this.w2Sin = Math.sin(h.wall2Phase);
    this.fatCos = Math.cos(h.fatAngle);
    this.fatSin = Math.sin(h.fatAngle);
    this.rvCos = Math.cos(h.rvAngle);
    this.rvSin = Math.sin(h.rvAngle);
    const base = (h.cavityA + h.wall) * this.rvScale;
    this.rvCentre = [h.rvOffset * base * this.rvCos, h.rvOffset * base * this.rvSin];
    this.rvAlongMm = h.rvAlong * base;
    this.rvAcrossMm = h.rvAcross * base;
    this.rvBloodRho2 = base > 0 ? Math.max(0, 1 - h.rvWall / this.rvAlongMm) ** 2 : 0;
    this.papillary = [];
    for (const p of h.papillary) {
      const pr = p.radius * this.cavScale;
      if (pr < 0.5) continue;
      const pc = Math.cos(p.angle);
      const ps = Math.sin(p.angle);
      const along = this.cavityRadius(pc, ps) * 0.62;
      this.papillary.push(along * pc, along * ps, pr);
    }
  }

  /**
   * Endocardial radius in the direction (c, s) = (cos θ, sin θ), body frame; 0 once the cavity
   * has closed. Harmonics use multiple-angle identities, so no trigonometric call per point.
   */
  private cavityRadius(c: number, s: number): number {
    if (this.cavScale === 0) return 0;
    const h = this.h;
    const cd = c * this.cosC + s * this.sinC;
    const sd = s * this.cosC - c * this.sinC;
    const ellipse = 1 / Math.sqrt((cd / h.cavityA) ** 2 + (sd / h.cavityB) ** 2);
    const cos3 = 4 * c * c * c - 3 * c;
    const sin3 = 3 * s - 4 * s * s * s;
    return this.cavScale * ellipse * (1 + h.lobeAmp * (cos3 * this.lobeCos - sin3 * this.lobeSin));
  }

  private wallThickness(c: number, s: number): number {
    const cos1 = c * this.w1Cos + s * this.w1Sin;
    const cos2 = (c * c - s * s) * this.w2Cos + 2 * c * s * this.w2Sin;
    return this.wallScale * this.h.wall * (1 + this.h.wall1 * cos1 + this.h.wall2 * cos2);
  }

  /** The tissue at body point (u, v) of this section. */
  tissueAt(u: number, v: number): Tissue {
    const h = this.h;
    const x = u - h.centre[0];
    const y = v - h.centre[1];
    const r2 = x * x + y * y;
    if (this.wallScale > 0 && r2 < this.heartRadius * this.heartRadius) {
      const heart = this.heartTissue(x, y, Math.sqrt(r2));
      if (heart !== undefined) return heart;
    }
    return this.thoraxTissue(u, v);
  }

  private heartTissue(x: number, y: number, r: number): Tissue | undefined {
    const h = this.h;
    const c = r > 0 ? x / r : 1;
    const s = r > 0 ? y / r : 0;
    const rCav = this.cavityRadius(c, s);
    if (r < rCav) {
      const pap = this.papillary;
      for (let n = 0; n < pap.length; n += 3) {
        const dx = x - pap[n];
        const dy = y - pap[n + 1];
        if (dx * dx + dy * dy < pap[n + 2] * pap[n + 2]) return Tissue.Papillary;
      }
      return Tissue.LvBlood;
    }
    const rEpi = rCav + this.wallThickness(c, s);
    if (r < rEpi) return Tissue.Myocardium;

    if (this.rvScale > 0) {
      // RV: an ellipse centred off the LV towards rvAngle; its part outside the epicardium is
      // the RV, with a thin free wall (unlabelled, muscle-like) along its outer boundary.
      const ox = x - this.rvCentre[0];
      const oy = y - this.rvCentre[1];
      const along = (ox * this.rvCos + oy * this.rvSin) / this.rvAlongMm;
      const across = (oy * this.rvCos - ox * this.rvSin) / this.rvAcrossMm;
      const rho2 = along * along + across * across;
      if (rho2 < 1) return rho2 < this.rvBloodRho2 ? Tissue.RvBlood : Tissue.RvWall;
    }
    const cf = Math.max(0, c * this.fatCos + s * this.fatSin);
    if (r < rEpi + h.fatWidth * cf * cf * this.wallScale) return Tissue.PericardialFat;
    return undefined;
  }

  private thoraxTissue(u: number, v: number): Tissue {
    const th = this.th;
    const rhoBody = Math.sqrt((u / th.bodyU) ** 2 + (v / th.bodyV) ** 2);
    if (rhoBody >= 1) return Tissue.Air;
    const inset = (1 - rhoBody) * Math.min(th.bodyU, th.bodyV);
    if (inset < th.subcutaneousFat) return Tissue.Fat;
    if (inset < th.subcutaneousFat + th.chestMuscle) return Tissue.ChestMuscle;
    const ao = th.aorta;
    if ((u - ao.centre[0]) ** 2 + (v - ao.centre[1]) ** 2 < ao.r * ao.r) return Tissue.AortaBlood;
    const sp = th.spine;
    if ((u - sp.centre[0]) ** 2 + (v - sp.centre[1]) ** 2 < sp.r * sp.r) return Tissue.Bone;
    for (let n = 0; n < th.vessels.length; n++) {
      const c = th.vessels[n];
      if ((u - c.centre[0]) ** 2 + (v - c.centre[1]) ** 2 < c.r * c.r) return Tissue.AortaBlood;
    }
    if (this.stomachScale > 0) {
      const g = th.stomach;
      const a = g.a * this.stomachScale;
      const b = g.b * this.stomachScale;
      if (((u - g.centre[0]) / a) ** 2 + ((v - g.centre[1]) / b) ** 2 < 1) return Tissue.StomachFluid;
    }
    if (this.liverScale > 0) {
      const l = th.liver;
      const a = l.a * this.liverScale;
      const b = l.b * this.liverScale;
      if (((u - l.centre[0]) / a) ** 2 + ((v - l.centre[1]) / b) ** 2 < 1) return Tissue.Liver;
    }
    for (let n = 0; n < th.lungs.length; n++) {
      const l = th.lungs[n];
      if (((u - l.centre[0]) / l.a) ** 2 + ((v - l.centre[1]) / l.b) ** 2 < 1) return Tissue.Lung;
    }
    return Tissue.Mediastinum;
  }
}
